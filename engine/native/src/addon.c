/* Entry point of the native helper: registers the system calls (system.c), the FUSE tap (tap.c),
 * the batch chunk codec (chunk-codec.c) and link-safe opening of caller-named paths (paths.c). */
#include "addon.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const char *errno_name(int errnum) {
  switch (errnum) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EIO: return "EIO";
    case EBADF: return "EBADF";
    case ENOMEM: return "ENOMEM";
    case EACCES: return "EACCES";
    case EBUSY: return "EBUSY";
    case EINVAL: return "EINVAL";
    case ENOTTY: return "ENOTTY";
    case ENOSPC: return "ENOSPC";
    case EOPNOTSUPP: return "EOPNOTSUPP";
    case ENOTSOCK: return "ENOTSOCK";
    case ENODEV: return "ENODEV";
    case ENOTDIR: return "ENOTDIR";
    case EEXIST: return "EEXIST";
    case ELOOP: return "ELOOP";
    case EXDEV: return "EXDEV";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ENOSYS: return "ENOSYS";
    case EISDIR: return "EISDIR";
    default: return "EUNKNOWN";
  }
}

void throw_errno(napi_env env, const char *what, int errnum) {
  char message[512];
  snprintf(message, sizeof message, "%s: %s", what, strerror(errnum));
  napi_value msg, code, err, num;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, errno_name(errnum), NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &err);
  napi_create_int32(env, errnum, &num);
  napi_set_named_property(env, err, "errno", num);
  napi_set_named_property(env, err, "code", code);
  napi_throw(env, err);
}

int arg_int64(napi_env env, napi_value value, const char *name, int64_t *out) {
  napi_valuetype type;
  napi_typeof(env, value, &type);
  if (type == napi_number) {
    napi_get_value_int64(env, value, out);
    return 1;
  }
  if (type == napi_bigint) {
    bool lossless;
    napi_get_value_bigint_int64(env, value, out, &lossless);
    return 1;
  }
  char message[128];
  snprintf(message, sizeof message, "%s must be a number", name);
  napi_throw_type_error(env, NULL, message);
  return 0;
}

int arg_string(napi_env env, napi_value value, const char *name, char *buf, size_t size) {
  size_t len;
  if (napi_get_value_string_utf8(env, value, buf, size, &len) != napi_ok || len >= size - 1) {
    char message[128];
    snprintf(message, sizeof message, "%s must be a string shorter than %zu bytes", name, size - 1);
    napi_throw_type_error(env, NULL, message);
    return 0;
  }
  return 1;
}

static napi_value init(napi_env env, napi_value exports) {
  register_system(env, exports);
  register_tap(env, exports);
  register_chunk_codec(env, exports);
  register_paths(env, exports);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
