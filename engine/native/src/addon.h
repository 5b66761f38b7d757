/* Shared declarations of the native helper: N-API registration of each part and small argument helpers. */
#ifndef DISKLINE_ADDON_H
#define DISKLINE_ADDON_H

#include <node_api.h>
#include <stdint.h>

/* Throws a JS Error "<what>: <strerror(errnum)>" with .code = errno name and .errno = errnum. */
void throw_errno(napi_env env, const char *what, int errnum);
/* Reads argument i as an int64 / uint32 / UTF-8 path (into buf); on failure throws a TypeError and returns 0. */
int arg_int64(napi_env env, napi_value value, const char *name, int64_t *out);
int arg_string(napi_env env, napi_value value, const char *name, char *buf, size_t size);

void register_system(napi_env env, napi_value exports);
void register_tap(napi_env env, napi_value exports);
void register_chunk_codec(napi_env env, napi_value exports);
void register_paths(napi_env env, napi_value exports);

#define EXPORT_FN(env, exports, name, fn)                                         \
  do {                                                                            \
    napi_value fn_value__;                                                        \
    napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &fn_value__);     \
    napi_set_named_property(env, exports, name, fn_value__);                      \
  } while (0)

#endif
