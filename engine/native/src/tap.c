/* The FUSE tap (filled in next). */
#include "addon.h"

void register_tap(napi_env env, napi_value exports) {}
