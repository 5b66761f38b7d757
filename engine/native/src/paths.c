/* Opening names relative to a held directory without following links: openat2(2) with RESOLVE_* flags (Node
 * has no openat), and readlinkat(2) on a descriptor of the link itself, so the engine reads the very link it
 * checked. engine/handles walks caller-named paths with these, one component at a time. */
#include "addon.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <limits.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

/* openat2(dirfd, path, flags, mode, resolve): a new descriptor; dirfd -100 is AT_FDCWD. */
static napi_value openat2_fn(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t dirfd, flags, mode, resolve;
  char path[PATH_MAX];
  if (argc < 5 || !arg_int64(env, argv[0], "dirfd", &dirfd) || !arg_string(env, argv[1], "path", path, sizeof path) ||
      !arg_int64(env, argv[2], "flags", &flags) || !arg_int64(env, argv[3], "mode", &mode) ||
      !arg_int64(env, argv[4], "resolve", &resolve))
    return NULL;
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = (uint64_t)flags | O_CLOEXEC;
  how.mode = (how.flags & (O_CREAT | O_TMPFILE)) ? (uint64_t)mode : 0;
  how.resolve = (uint64_t)resolve;
  long fd;
  do {
    fd = syscall(SYS_openat2, (int)dirfd, path, &how, sizeof how);
  } while (fd < 0 && (errno == EINTR || errno == EAGAIN));
  if (fd < 0) {
    throw_errno(env, "openat2", errno);
    return NULL;
  }
  napi_value result;
  napi_create_int32(env, (int32_t)fd, &result);
  return result;
}

/* readlinkAt(fd): the target of the symbolic link that fd (opened O_PATH|O_NOFOLLOW) refers to. */
static napi_value readlinkat_fn(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t fd;
  if (argc < 1 || !arg_int64(env, argv[0], "fd", &fd)) return NULL;
  char target[PATH_MAX];
  ssize_t length = readlinkat((int)fd, "", target, sizeof target);
  if (length < 0) {
    throw_errno(env, "readlinkat", errno);
    return NULL;
  }
  if ((size_t)length >= sizeof target) {
    throw_errno(env, "readlinkat", ENAMETOOLONG);
    return NULL;
  }
  napi_value result;
  napi_create_string_utf8(env, target, (size_t)length, &result);
  return result;
}

void register_paths(napi_env env, napi_value exports) {
  EXPORT_FN(env, exports, "openat2", openat2_fn);
  EXPORT_FN(env, exports, "readlinkAt", readlinkat_fn);
}
