/* hook.c - named hook points for deterministic race tests (see hook.h).
 *
 * Lock protocol: one global mutex guards the whole table; parked threads
 * wait on one global condvar and re-check their own slot when woken
 * (broadcast). Tests arm a handful of points, so a linear table is enough.
 *
 * Fast path: rf__hooks_active counts armed/failing slots. Library code calls
 * rf__hook_point on every pass; when the count is zero it returns after one
 * relaxed load. Relaxed is enough: a test arms a point before it starts (or
 * signals, through a pthread primitive that orders memory) the thread that is
 * meant to park there, so that thread's load is ordered after the store.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#ifdef RF_TEST_HOOKS

#define RF__HOOK_SLOTS 64

typedef struct {
  char name[RF_HOOK_NAME_MAX + 1];
  unsigned to_park;   /* threads still to catch */
  unsigned parked;    /* threads waiting now */
  unsigned releases;  /* release tokens not yet consumed */
  unsigned to_fail;   /* RF_HOOK_FAIL evaluations still to fail */
  unsigned long hits; /* passes while active */
} rf__hook_slot;

static pthread_mutex_t rf__hook_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t rf__hook_cv;
static pthread_once_t rf__hook_cv_once = PTHREAD_ONCE_INIT;
static rf__hook_slot rf__hooks[RF__HOOK_SLOTS];
static atomic_int rf__hooks_active;

static void rf__hook_cv_init(void) {
  rf__cond_init(&rf__hook_cv);
}

/* Caller holds rf__hook_mu. Returns the slot for name, creating it if
 * create is set; NULL if absent (or the table is full). */
static rf__hook_slot *rf__hook_find(const char *name, int create) {
  rf__hook_slot *free_slot = NULL;
  for (int i = 0; i < RF__HOOK_SLOTS; i++) {
    if (rf__hooks[i].name[0] == '\0') {
      if (free_slot == NULL) {
        free_slot = &rf__hooks[i];
      }
    } else if (strcmp(rf__hooks[i].name, name) == 0) {
      return &rf__hooks[i];
    }
  }
  if (create && free_slot != NULL) {
    memset(free_slot, 0, sizeof(*free_slot));
    strcpy(free_slot->name, name);
    atomic_fetch_add_explicit(&rf__hooks_active, 1, memory_order_relaxed);
    return free_slot;
  }
  return NULL;
}

static int rf__hook_name_ok(const char *name) {
  return name != NULL && name[0] != '\0' && strlen(name) <= RF_HOOK_NAME_MAX;
}

void rf__hook_point(const char *name) {
  if (atomic_load_explicit(&rf__hooks_active, memory_order_relaxed) == 0) {
    return;
  }
  pthread_once(&rf__hook_cv_once, rf__hook_cv_init);
  pthread_mutex_lock(&rf__hook_mu);
  rf__hook_slot *s = rf__hook_find(name, 0);
  if (s != NULL) {
    s->hits++;
    if (s->to_park > 0) {
      s->to_park--;
      s->parked++;
      pthread_cond_broadcast(&rf__hook_cv);
      struct timespec dl = rf__deadline(RF_HOOK_PARK_MAX_MS);
      while (s->releases == 0 && s->name[0] != '\0') {
        if (pthread_cond_timedwait(&rf__hook_cv, &rf__hook_mu, &dl) != 0) {
          fprintf(stderr, "rf_hook: thread parked at '%s' gave up after %d ms\n", name,
                  RF_HOOK_PARK_MAX_MS);
          break;
        }
      }
      if (s->name[0] != '\0') {
        if (s->releases > 0) {
          s->releases--;
        }
        s->parked--;
      }
    }
  }
  pthread_mutex_unlock(&rf__hook_mu);
}

bool rf__hook_fail_point(const char *name) {
  if (atomic_load_explicit(&rf__hooks_active, memory_order_relaxed) == 0) {
    return false;
  }
  bool fail = false;
  pthread_mutex_lock(&rf__hook_mu);
  rf__hook_slot *s = rf__hook_find(name, 0);
  if (s != NULL) {
    s->hits++;
    if (s->to_fail > 0) {
      s->to_fail--;
      fail = true;
    }
  }
  pthread_mutex_unlock(&rf__hook_mu);
  return fail;
}

bool rf_hook_enabled(void) {
  return true;
}

int rf_hook_arm(const char *name, unsigned count) {
  if (!rf__hook_name_ok(name) || count == 0) {
    return RF_EINVAL;
  }
  pthread_once(&rf__hook_cv_once, rf__hook_cv_init);
  pthread_mutex_lock(&rf__hook_mu);
  rf__hook_slot *s = rf__hook_find(name, 1);
  if (s != NULL) {
    s->to_park += count;
  }
  pthread_mutex_unlock(&rf__hook_mu);
  return s != NULL ? 0 : RF_ENOMEM;
}

int rf_hook_fail(const char *name, unsigned count) {
  if (!rf__hook_name_ok(name) || count == 0) {
    return RF_EINVAL;
  }
  pthread_mutex_lock(&rf__hook_mu);
  rf__hook_slot *s = rf__hook_find(name, 1);
  if (s != NULL) {
    s->to_fail += count;
  }
  pthread_mutex_unlock(&rf__hook_mu);
  return s != NULL ? 0 : RF_ENOMEM;
}

int rf_hook_wait_parked(const char *name, unsigned n, int timeout_ms) {
  if (!rf__hook_name_ok(name)) {
    return RF_EINVAL;
  }
  pthread_once(&rf__hook_cv_once, rf__hook_cv_init);
  struct timespec dl = rf__deadline(timeout_ms);
  int rc = 0;
  pthread_mutex_lock(&rf__hook_mu);
  for (;;) {
    rf__hook_slot *s = rf__hook_find(name, 0);
    if (s != NULL && s->parked >= n) {
      break;
    }
    if (pthread_cond_timedwait(&rf__hook_cv, &rf__hook_mu, &dl) != 0) {
      rc = RF_ETIMEDOUT;
      break;
    }
  }
  pthread_mutex_unlock(&rf__hook_mu);
  return rc;
}

int rf_hook_release(const char *name, unsigned n) {
  if (!rf__hook_name_ok(name) || n == 0) {
    return RF_EINVAL;
  }
  pthread_once(&rf__hook_cv_once, rf__hook_cv_init);
  pthread_mutex_lock(&rf__hook_mu);
  rf__hook_slot *s = rf__hook_find(name, 0);
  if (s != NULL) {
    s->releases += n;
    pthread_cond_broadcast(&rf__hook_cv);
  }
  pthread_mutex_unlock(&rf__hook_mu);
  return s != NULL ? 0 : RF_ENOENT;
}

unsigned long rf_hook_hits(const char *name) {
  unsigned long hits = 0;
  if (!rf__hook_name_ok(name)) {
    return 0;
  }
  pthread_mutex_lock(&rf__hook_mu);
  rf__hook_slot *s = rf__hook_find(name, 0);
  if (s != NULL) {
    hits = s->hits;
  }
  pthread_mutex_unlock(&rf__hook_mu);
  return hits;
}

void rf_hook_reset(void) {
  pthread_once(&rf__hook_cv_once, rf__hook_cv_init);
  pthread_mutex_lock(&rf__hook_mu);
  for (int i = 0; i < RF__HOOK_SLOTS; i++) {
    if (rf__hooks[i].name[0] != '\0') {
      /* A parked thread sees name[0] == '\0' and leaves without touching
       * the slot's counters again. */
      memset(&rf__hooks[i], 0, sizeof(rf__hooks[i]));
      atomic_fetch_sub_explicit(&rf__hooks_active, 1, memory_order_relaxed);
    }
  }
  pthread_cond_broadcast(&rf__hook_cv);
  pthread_mutex_unlock(&rf__hook_mu);
  rf_test_fail_alloc_after(-1);
}

#else /* !RF_TEST_HOOKS */

bool rf_hook_enabled(void) {
  return false;
}
int rf_hook_arm(const char *name, unsigned count) {
  (void)name;
  (void)count;
  return RF_ENOTSUP;
}
int rf_hook_fail(const char *name, unsigned count) {
  (void)name;
  (void)count;
  return RF_ENOTSUP;
}
int rf_hook_wait_parked(const char *name, unsigned n, int timeout_ms) {
  (void)name;
  (void)n;
  (void)timeout_ms;
  return RF_ENOTSUP;
}
int rf_hook_release(const char *name, unsigned n) {
  (void)name;
  (void)n;
  return RF_ENOTSUP;
}
unsigned long rf_hook_hits(const char *name) {
  (void)name;
  return 0;
}
void rf_hook_reset(void) {}

#endif
