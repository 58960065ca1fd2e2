/* racefree/racefree.h - umbrella header: every public module of libracefree.
 * Include the module headers directly to depend on less. */
#ifndef RACEFREE_H
#define RACEFREE_H

#include "racefree/errors.h"

#include "racefree/cache.h"
#include "racefree/kmutex.h"
#include "racefree/lock.h"
#include "racefree/metrics.h"
#include "racefree/once.h"
#include "racefree/pool.h"
#include "racefree/queue.h"
#include "racefree/retry.h"
#include "racefree/singleflight.h"
#include "racefree/timer.h"

#define RF_VERSION_MAJOR  0
#define RF_VERSION_MINOR  1
#define RF_VERSION_PATCH  0
#define RF_VERSION_STRING "0.1.0"

#endif
