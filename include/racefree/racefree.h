/* racefree/racefree.h - umbrella header: every public module of libracefree.
 * Include the module headers directly to depend on less. */
#ifndef RACEFREE_H
#define RACEFREE_H

#include "racefree/errors.h"
#include "racefree/hook.h"

#define RF_VERSION_MAJOR  0
#define RF_VERSION_MINOR  1
#define RF_VERSION_PATCH  0
#define RF_VERSION_STRING "0.1.0"

#endif
