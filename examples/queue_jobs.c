/* queue_jobs.c - a job queue deduplicated by job id: the same welcome mail
 * enqueued three times is one job, sent once; a failing attempt is retried
 * with backoff. Uses the "mem:" backend; "sqlite:PATH" makes the same queue
 * durable and shared by processes. Described in docs/queue.md. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <racefree/errors.h>
#include <racefree/queue.h>

int main(void) {
  rf_queue_t *q = NULL;
  int rc = rf_queue_open(&q, "mem:", NULL);
  if (rc != 0) {
    fprintf(stderr, "rf_queue_open: %s\n", rf_strerror(rc));
    return 1;
  }
  rf_job_opts_t o = RF_JOB_OPTS_DEFAULT;
  o.backoff_base_ms = 1; /* retry (almost) at once, for the example */
  o.backoff_cap_ms = 1;
  const char *mail = "{\"to\":\"ada@example.com\"}";
  for (int i = 0; i < 3; i++) { /* three requests enqueue the same job id */
    rc = rf_queue_add(q, "welcome-42", mail, strlen(mail), &o);
    printf("add welcome-42: %s\n", rf_err_name(rc));
  }

  int sent = 0;
  for (int round = 0; round < 50 && sent == 0; round++) {
    rf_job_t *job = NULL;
    rc = rf_queue_claim(q, "worker-1", 30000, &job);
    if (rc == RF_ENOENT) { /* nothing due yet: the retry waits out its backoff */
      nanosleep(&(struct timespec){0, 2000000}, NULL);
      continue;
    }
    if (rc != 0)
      break;
    if (job->attempt == 1) { /* the mail server refuses the first attempt */
      printf("attempt %u of %s: fail (smtp 451)\n", job->attempt, job->id);
      rf_queue_fail(q, job->id, job->attempt, "smtp: 451");
    } else {
      printf("attempt %u of %s: sent %.*s\n", job->attempt, job->id, (int)job->payload_len,
             (const char *)job->payload);
      rf_queue_complete(q, job->id, job->attempt);
      sent++;
    }
    rf_job_free(job);
  }

  rf_job_info_t info;
  rf_queue_get(q, "welcome-42", &info);
  printf("welcome-42: %s after %u attempts, last error \"%s\"\n", rf_job_status_name(info.status),
         info.attempts, info.last_error);
  rc = rf_queue_add(q, "welcome-42", mail, strlen(mail), &o);
  printf("add welcome-42 again: %s (the id stays taken until purged)\n", rf_err_name(rc));
  rf_queue_close(q);
  return sent == 1 ? 0 : 1;
}
