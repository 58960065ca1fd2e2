/* queue_mem.c - the in-process backend of the job queue ("mem:").
 *
 * Not durable: the jobs live in this process and die with it (or with
 * rf_queue_close). Each rf_queue_open("mem:") is an independent queue.
 *
 * Data structures, all guarded by one mutex:
 *  - a chained hash table id -> job record, holding every record until
 *    purged (completed and failed ones too: they are what makes a repeated
 *    id a duplicate);
 *  - a binary min-heap of waiting jobs keyed by (run_at, seq) and one of
 *    active jobs keyed by (lease_until, seq), each record knowing its
 *    position so it can be removed from the middle. seq is the creation
 *    order and breaks ties, so jobs due at the same time run FIFO.
 * A claim therefore looks at two heap tops: O(log n) per operation.
 *
 * Atomicity: every operation is one critical section, so "is the id free?"
 * and "insert it", or "is the job due?" and "mark it active", can never be
 * separated by another thread. Everything an operation may need to
 * allocate (the record, its payload, the heap slots, the job copy handed
 * to the claimer, the error text) is allocated before the first change, so
 * an allocation failure leaves the queue as it was.
 *
 * Lock waits are bounded by busy_timeout_ms like the SQLite write lock
 * (trylock, then pthread_mutex_timedlock), which keeps the two backends
 * interchangeable in tests that hold the lock on purpose.
 */
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"
#include "queue_internal.h"

#define RF__MEM_NOWHERE SIZE_MAX

typedef struct rf__mjob {
  struct rf__mjob *next; /* hash chain */
  uint64_t hash;
  uint64_t seq;
  unsigned char *payload; /* NULL when len is 0 or removed */
  size_t len;
  char *last_error; /* NULL: none (or `stalled`) */
  bool stalled;     /* failed by lease expiry: last error is the literal */
  rf_job_status_t status;
  unsigned attempts;
  unsigned max_attempts;
  bool remove_on_complete;
  bool removed;
  uint64_t base_ms, cap_ms;
  uint64_t run_at_ms, lease_until_ms, created_ms, updated_ms;
  size_t heap_pos; /* index in the waiting or active heap, or NOWHERE */
  char owner[RF_QUEUE_ID_MAX + 1];
  char id[]; /* NUL-terminated */
} rf__mjob_t;

typedef struct {
  rf__mjob_t **v;
  size_t n, cap;
  bool by_lease; /* key: lease_until (active heap) or run_at (waiting) */
} rf__mheap_t;

typedef struct {
  rf_queue_t *q;
  int busy_timeout_ms;
  pthread_mutex_t mu;
  rf__mjob_t **buckets;
  size_t nbuckets; /* power of two */
  size_t count;    /* records */
  size_t live;     /* waiting + active records */
  uint64_t next_seq;
  rf__mheap_t waiting, active;
  uint64_t by_status[RF_JOB_STATUS_COUNT];
} rf__mem_t;

/* ------------------------------------------------------------ heaps */

static uint64_t rf__mheap_key(const rf__mheap_t *h, const rf__mjob_t *j) {
  return h->by_lease ? j->lease_until_ms : j->run_at_ms;
}

static bool rf__mheap_less(const rf__mheap_t *h, const rf__mjob_t *a, const rf__mjob_t *b) {
  uint64_t ka = rf__mheap_key(h, a), kb = rf__mheap_key(h, b);
  return ka < kb || (ka == kb && a->seq < b->seq);
}

static void rf__mheap_set(rf__mheap_t *h, size_t i, rf__mjob_t *j) {
  h->v[i] = j;
  j->heap_pos = i;
}

static void rf__mheap_up(rf__mheap_t *h, size_t i) {
  rf__mjob_t *j = h->v[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!rf__mheap_less(h, j, h->v[parent])) {
      break;
    }
    rf__mheap_set(h, i, h->v[parent]);
    i = parent;
  }
  rf__mheap_set(h, i, j);
}

static void rf__mheap_down(rf__mheap_t *h, size_t i) {
  rf__mjob_t *j = h->v[i];
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= h->n) {
      break;
    }
    if (c + 1 < h->n && rf__mheap_less(h, h->v[c + 1], h->v[c])) {
      c++;
    }
    if (!rf__mheap_less(h, h->v[c], j)) {
      break;
    }
    rf__mheap_set(h, i, h->v[c]);
    i = c;
  }
  rf__mheap_set(h, i, j);
}

/* Capacity is reserved by rf__mem_reserve before any push. */
static void rf__mheap_push(rf__mheap_t *h, rf__mjob_t *j) {
  h->v[h->n] = j;
  j->heap_pos = h->n;
  h->n++;
  rf__mheap_up(h, h->n - 1);
}

static void rf__mheap_remove(rf__mheap_t *h, rf__mjob_t *j) {
  size_t i = j->heap_pos;
  j->heap_pos = RF__MEM_NOWHERE;
  h->n--;
  if (i == h->n) {
    return;
  }
  rf__mjob_t *moved = h->v[h->n];
  rf__mheap_set(h, i, moved);
  rf__mheap_down(h, i);
  rf__mheap_up(h, moved->heap_pos);
}

static int rf__mheap_reserve(rf__mheap_t *h, size_t need) {
  if (need <= h->cap) {
    return 0;
  }
  size_t cap = h->cap == 0 ? 64 : h->cap * 2;
  while (cap < need) {
    cap *= 2;
  }
  rf__mjob_t **v = rf__realloc(h->v, cap * sizeof(rf__mjob_t *));
  if (v == NULL) {
    return RF_ENOMEM;
  }
  h->v = v;
  h->cap = cap;
  return 0;
}

/* ------------------------------------------------------------ table */

static rf__mjob_t *rf__mem_find(rf__mem_t *m, const char *id, uint64_t hash) {
  for (rf__mjob_t *j = m->buckets[hash & (m->nbuckets - 1)]; j != NULL; j = j->next) {
    if (j->hash == hash && strcmp(j->id, id) == 0) {
      return j;
    }
  }
  return NULL;
}

/* Best effort: when the bigger table cannot be allocated the chains just
 * get longer; nothing fails. */
static void rf__mem_grow(rf__mem_t *m) {
  if (m->count < m->nbuckets) {
    return;
  }
  size_t n = m->nbuckets * 2;
  rf__mjob_t **b = rf__calloc(n, sizeof(rf__mjob_t *));
  if (b == NULL) {
    return;
  }
  for (size_t i = 0; i < m->nbuckets; i++) {
    rf__mjob_t *j = m->buckets[i];
    while (j != NULL) {
      rf__mjob_t *next = j->next;
      j->next = b[j->hash & (n - 1)];
      b[j->hash & (n - 1)] = j;
      j = next;
    }
  }
  rf__free(m->buckets);
  m->buckets = b;
  m->nbuckets = n;
}

static void rf__mjob_free(rf__mjob_t *j) {
  rf__free(j->payload);
  rf__free(j->last_error);
  rf__free(j);
}

static void rf__mem_set_status(rf__mem_t *m, rf__mjob_t *j, rf_job_status_t s) {
  m->by_status[j->status]--;
  m->by_status[s]++;
  bool was_live = j->status == RF_JOB_WAITING || j->status == RF_JOB_ACTIVE;
  bool is_live = s == RF_JOB_WAITING || s == RF_JOB_ACTIVE;
  m->live = m->live - (was_live ? 1 : 0) + (is_live ? 1 : 0);
  j->status = s;
}

/* ------------------------------------------------------------ lock */

static int rf__mem_lock(rf__mem_t *m) {
  return rf__queue_timedlock(&m->mu, m->busy_timeout_ms);
}

static void rf__mem_unlock(rf__mem_t *m) {
  pthread_mutex_unlock(&m->mu);
}

/* ------------------------------------------------------------ ops */

static int rf__mem_open(rf_queue_t *q, const char *target, const rf__queue_cfg_t *cfg,
                        void **state) {
  if (target[0] != '\0') {
    return RF_EINVAL; /* "mem:" takes no argument */
  }
  rf__mem_t *m = rf__calloc(1, sizeof(*m));
  if (m == NULL) {
    return RF_ENOMEM;
  }
  m->nbuckets = 64;
  m->buckets = rf__calloc(m->nbuckets, sizeof(rf__mjob_t *));
  if (m->buckets == NULL || pthread_mutex_init(&m->mu, NULL) != 0) {
    rf__free(m->buckets);
    rf__free(m);
    return RF_ENOMEM;
  }
  m->q = q;
  m->busy_timeout_ms = cfg->busy_timeout_ms;
  m->active.by_lease = true;
  *state = m;
  return 0;
}

static void rf__mem_close(void *state) {
  rf__mem_t *m = state;
  for (size_t i = 0; i < m->nbuckets; i++) {
    rf__mjob_t *j = m->buckets[i];
    while (j != NULL) {
      rf__mjob_t *next = j->next;
      rf__mjob_free(j);
      j = next;
    }
  }
  rf__free(m->buckets);
  rf__free(m->waiting.v);
  rf__free(m->active.v);
  pthread_mutex_destroy(&m->mu);
  rf__free(m);
}

static int rf__mem_add(void *state, const rf__job_new_t *in) {
  rf__mem_t *m = state;
  uint64_t hash = rf__hash_str(in->id);
  size_t idlen = strlen(in->id);
  /* Allocate outside the lock; freed again if the id turns out taken. */
  rf__mjob_t *j = rf__calloc(1, sizeof(*j) + idlen + 1);
  unsigned char *payload = in->len > 0 ? rf__malloc(in->len) : NULL;
  int rc = 0;
  if (j == NULL || (in->len > 0 && payload == NULL)) {
    rc = RF_ENOMEM;
    goto out;
  }
  memcpy(j->id, in->id, idlen + 1);
  if (in->len > 0) {
    memcpy(payload, in->payload, in->len);
  }
  j->hash = hash;
  j->payload = payload;
  j->len = in->len;
  j->status = RF_JOB_WAITING;
  j->max_attempts = in->max_attempts;
  j->base_ms = in->base_ms;
  j->cap_ms = in->cap_ms;
  j->remove_on_complete = in->remove_on_complete;
  j->run_at_ms = in->run_at_ms;
  j->created_ms = j->updated_ms = in->now_ms;
  j->heap_pos = RF__MEM_NOWHERE;

  rc = rf__mem_lock(m);
  if (rc != 0) {
    goto out;
  }
  if (rf__mem_find(m, in->id, hash) != NULL) {
    rc = RF_EEXIST;
  } else if (rf__mheap_reserve(&m->waiting, m->live + 1) != 0 ||
             rf__mheap_reserve(&m->active, m->live + 1) != 0) {
    rc = RF_ENOMEM;
  } else {
    j->seq = m->next_seq++;
    size_t b = hash & (m->nbuckets - 1);
    j->next = m->buckets[b];
    m->buckets[b] = j;
    m->count++;
    m->live++;
    m->by_status[RF_JOB_WAITING]++;
    rf__mheap_push(&m->waiting, j);
    rf__mem_grow(m);
    j = NULL; /* both owned by the table now */
    payload = NULL;
  }
  rf__mem_unlock(m);

out:
  rf__free(j);
  rf__free(payload);
  return rc;
}

/* An active job whose lease expired before now and that has no attempt
 * left, searched depth-first from heap index i: the heap order prunes
 * every subtree whose root has not expired. NULL if none. */
static rf__mjob_t *rf__mem_find_exhausted(rf__mheap_t *h, size_t i, uint64_t now) {
  if (i >= h->n || h->v[i]->lease_until_ms >= now) {
    return NULL;
  }
  if (h->v[i]->attempts >= h->v[i]->max_attempts) {
    return h->v[i];
  }
  rf__mjob_t *j = rf__mem_find_exhausted(h, 2 * i + 1, now);
  return j != NULL ? j : rf__mem_find_exhausted(h, 2 * i + 2, now);
}

static void rf__mem_fail_exhausted(rf__mem_t *m, uint64_t now) {
  rf__mjob_t *j;
  while ((j = rf__mem_find_exhausted(&m->active, 0, now)) != NULL) {
    rf__mheap_remove(&m->active, j);
    rf__mem_set_status(m, j, RF_JOB_FAILED);
    /* The reason is a literal, flagged rather than copied: this step must
     * not fail on an allocation. */
    rf__free(j->last_error);
    j->last_error = NULL;
    j->stalled = true;
    j->lease_until_ms = 0;
    j->owner[0] = '\0';
    j->updated_ms = now;
  }
}

static int rf__mem_claim(void *state, const char *worker_id, uint64_t now, uint64_t lease_ms,
                         rf_job_t **out) {
  rf__mem_t *m = state;
  int rc = rf__mem_lock(m);
  if (rc != 0) {
    return rc;
  }
  rf__mem_fail_exhausted(m, now);
  rf__mjob_t *w = m->waiting.n > 0 ? m->waiting.v[0] : NULL;
  rf__mjob_t *a = m->active.n > 0 ? m->active.v[0] : NULL;
  if (w != NULL && w->run_at_ms > now) {
    w = NULL;
  }
  if (a != NULL && a->lease_until_ms >= now) {
    a = NULL;
  }
  rf__mjob_t *j = w;
  if (a != NULL && (w == NULL || a->lease_until_ms < w->run_at_ms)) {
    j = a;
  }
  if (j == NULL) {
    rc = RF_ENOENT;
    goto out;
  }
  /* The window the naive check-then-claim leaves open, between choosing
   * the job and taking it. Here the mutex is held, so a second claimer
   * cannot get in while a race test parks us (tests/race/race_queue.c). */
  RF_HOOK("queue.claim.before_take");
  rf_job_t *job = rf__job_alloc(j->len);
  if (job == NULL) {
    rc = RF_ENOMEM;
    goto out;
  }
  if (j->status == RF_JOB_WAITING) {
    rf__mheap_remove(&m->waiting, j);
    rf__mem_set_status(m, j, RF_JOB_ACTIVE);
  } else {
    rf__mheap_remove(&m->active, j);
  }
  j->attempts++;
  j->lease_until_ms = now + lease_ms;
  j->run_at_ms = j->lease_until_ms; /* next due: when the lease ends */
  j->updated_ms = now;
  memcpy(j->owner, worker_id, strlen(worker_id) + 1);
  rf__mheap_push(&m->active, j);

  memcpy(job->id, j->id, strlen(j->id) + 1);
  job->attempt = j->attempts;
  job->max_attempts = j->max_attempts;
  job->lease_until_ms = j->lease_until_ms;
  if (j->len > 0) {
    memcpy(job->payload, j->payload, j->len);
  }
  rf__queue_copy_error(job->last_error, j->stalled ? RF__QUEUE_STALLED_ERROR : j->last_error);
  *out = job;
out:
  rf__mem_unlock(m);
  return rc;
}

/* Fencing: the job must exist and be active with this attempt. */
static int rf__mem_token(rf__mem_t *m, const char *id, unsigned attempt, rf__mjob_t **out) {
  rf__mjob_t *j = rf__mem_find(m, id, rf__hash_str(id));
  if (j == NULL) {
    return RF_ENOENT;
  }
  if (j->status != RF_JOB_ACTIVE || j->attempts != attempt) {
    return RF_ESTALE;
  }
  *out = j;
  return 0;
}

static int rf__mem_complete(void *state, const char *id, unsigned attempt, uint64_t now) {
  rf__mem_t *m = state;
  int rc = rf__mem_lock(m);
  if (rc != 0) {
    return rc;
  }
  rf__mjob_t *j = NULL;
  rc = rf__mem_token(m, id, attempt, &j);
  if (rc == 0) {
    rf__mheap_remove(&m->active, j);
    rf__mem_set_status(m, j, RF_JOB_COMPLETED);
    j->lease_until_ms = 0;
    j->owner[0] = '\0';
    j->updated_ms = now;
    if (j->remove_on_complete) {
      rf__free(j->payload);
      rf__free(j->last_error);
      j->payload = NULL;
      j->last_error = NULL;
      j->len = 0;
      j->removed = true;
    }
  }
  rf__mem_unlock(m);
  return rc;
}

static int rf__mem_fail(void *state, const char *id, unsigned attempt, const char *error,
                        uint64_t now) {
  rf__mem_t *m = state;
  char *text = NULL;
  if (error != NULL && (text = rf__strdup(error)) == NULL) {
    return RF_ENOMEM;
  }
  int rc = rf__mem_lock(m);
  if (rc != 0) {
    rf__free(text);
    return rc;
  }
  rf__mjob_t *j = NULL;
  rc = rf__mem_token(m, id, attempt, &j);
  if (rc == 0) {
    rf__mheap_remove(&m->active, j);
    rf__free(j->last_error);
    j->last_error = text;
    j->stalled = false;
    text = NULL;
    j->lease_until_ms = 0;
    j->owner[0] = '\0';
    j->updated_ms = now;
    if (j->attempts < j->max_attempts) {
      rf__mem_set_status(m, j, RF_JOB_WAITING);
      j->run_at_ms = now + rf__queue_backoff_ms(m->q, j->attempts, j->base_ms, j->cap_ms);
      rf__mheap_push(&m->waiting, j);
    } else {
      rf__mem_set_status(m, j, RF_JOB_FAILED);
    }
  }
  rf__mem_unlock(m);
  rf__free(text);
  return rc;
}

static int rf__mem_extend(void *state, const char *id, unsigned attempt, uint64_t lease_until,
                          uint64_t now) {
  rf__mem_t *m = state;
  int rc = rf__mem_lock(m);
  if (rc != 0) {
    return rc;
  }
  rf__mjob_t *j = NULL;
  rc = rf__mem_token(m, id, attempt, &j);
  if (rc == 0) {
    rf__mheap_remove(&m->active, j);
    j->lease_until_ms = lease_until;
    j->run_at_ms = lease_until;
    j->updated_ms = now;
    rf__mheap_push(&m->active, j);
  }
  rf__mem_unlock(m);
  return rc;
}

static int rf__mem_get(void *state, const char *id, rf_job_info_t *out) {
  rf__mem_t *m = state;
  int rc = rf__mem_lock(m);
  if (rc != 0) {
    return rc;
  }
  rf__mjob_t *j = rf__mem_find(m, id, rf__hash_str(id));
  if (j == NULL) {
    rc = RF_ENOENT;
  } else {
    memset(out, 0, sizeof(*out));
    out->status = j->status;
    out->attempts = j->attempts;
    out->max_attempts = j->max_attempts;
    out->run_at_ms = j->run_at_ms;
    out->lease_until_ms = j->lease_until_ms;
    out->created_ms = j->created_ms;
    out->updated_ms = j->updated_ms;
    out->payload_len = j->len;
    out->removed = j->removed;
    rf__queue_copy_error(out->last_error, j->stalled ? RF__QUEUE_STALLED_ERROR : j->last_error);
  }
  rf__mem_unlock(m);
  return rc;
}

static int rf__mem_counts(void *state, rf_queue_counts_t *out) {
  rf__mem_t *m = state;
  int rc = rf__mem_lock(m);
  if (rc != 0) {
    return rc;
  }
  for (int s = 0; s < RF_JOB_STATUS_COUNT; s++) {
    out->n[s] = m->by_status[s];
  }
  rf__mem_unlock(m);
  return 0;
}

static int rf__mem_purge(void *state, uint64_t before_ms, uint64_t *purged) {
  rf__mem_t *m = state;
  int rc = rf__mem_lock(m);
  if (rc != 0) {
    return rc;
  }
  uint64_t n = 0;
  for (size_t i = 0; i < m->nbuckets; i++) {
    rf__mjob_t **link = &m->buckets[i];
    while (*link != NULL) {
      rf__mjob_t *j = *link;
      bool final = j->status == RF_JOB_COMPLETED || j->status == RF_JOB_FAILED;
      if (final && j->updated_ms < before_ms) {
        *link = j->next;
        m->by_status[j->status]--;
        m->count--;
        rf__mjob_free(j);
        n++;
      } else {
        link = &j->next;
      }
    }
  }
  rf__mem_unlock(m);
  *purged = n;
  return 0;
}

const rf__queue_backend_t rf__queue_mem_backend = {
    .scheme = "mem",
    .open = rf__mem_open,
    .close = rf__mem_close,
    .add = rf__mem_add,
    .claim = rf__mem_claim,
    .complete = rf__mem_complete,
    .fail = rf__mem_fail,
    .extend = rf__mem_extend,
    .get = rf__mem_get,
    .counts = rf__mem_counts,
    .purge = rf__mem_purge,
};
