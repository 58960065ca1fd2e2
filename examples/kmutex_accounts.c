/* kmutex_accounts.c - one lock per account name: transfers on the same
 * account serialise, different accounts run in parallel, and the lock table
 * holds an entry only while a key is locked or awaited. Described in
 * docs/kmutex.md. */
#include <pthread.h>
#include <stdio.h>
#include <time.h>

#include <racefree/errors.h>
#include <racefree/kmutex.h>

static rf_kmutex_t *locks;
static long balance[2] = {1000, 1000}; /* "alice", "bob": guarded by their key */
static const char *const names[2] = {"alice", "bob"};

static void *spend(void *arg) {
  int who = *(const int *)arg;
  for (int i = 0; i < 100; i++) {
    if (rf_kmutex_lock(locks, names[who], 5000) != 0)
      return NULL;
    long b = balance[who]; /* read ... */
    if (b >= 2) {
      nanosleep(&(struct timespec){0, 10000}, NULL); /* ... a window ... */
      balance[who] = b - 2;                          /* ... write: safe under the key's lock */
    }
    rf_kmutex_unlock(locks, names[who]);
  }
  return NULL;
}

int main(void) {
  if (rf_kmutex_create(&locks) != 0)
    return 1;
  pthread_t t[8];
  static const int account[8] = {0, 1, 0, 1, 0, 1, 0, 1}; /* 4 threads per account */
  for (int i = 0; i < 8; i++)
    pthread_create(&t[i], NULL, spend, (void *)&account[i]);
  for (int i = 0; i < 8; i++)
    pthread_join(t[i], NULL);
  printf("alice: 1000 - 4 threads x 100 x 2 = %ld\n", balance[0]);
  printf("bob:   1000 - 4 threads x 100 x 2 = %ld\n", balance[1]);

  int rc = rf_kmutex_trylock(locks, "alice");
  printf("trylock alice: %s; again while held: %s\n", rf_err_name(rc),
         rf_err_name(rf_kmutex_trylock(locks, "alice")));
  printf("entries while alice is locked: %zu\n", rf_kmutex_entries(locks));
  rf_kmutex_unlock(locks, "alice");
  printf("entries after unlock: %zu\n", rf_kmutex_entries(locks));
  rf_kmutex_destroy(locks);
  return balance[0] == 200 && balance[1] == 200 && rc == 0 ? 0 : 1;
}
