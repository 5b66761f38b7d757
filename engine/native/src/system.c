/* Small system calls the engine needs and Node lacks: aligned buffers for O_DIRECT, unix-socket peer
 * credentials, file-system freeze/thaw, block device size. Each is synchronous and fast. */
#include "addon.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static void free_aligned(napi_env env, void *data, void *hint) { free(data); }

/* allocAligned(size, alignment = 4096): ArrayBuffer whose memory starts at a multiple of alignment. */
static napi_value alloc_aligned(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t size = 0, alignment = 4096;
  if (argc < 1 || !arg_int64(env, argv[0], "size", &size)) return NULL;
  if (argc > 1 && !arg_int64(env, argv[1], "alignment", &alignment)) return NULL;
  if (size < 0 || alignment < (int64_t)sizeof(void *) || (alignment & (alignment - 1)) != 0) {
    napi_throw_range_error(env, NULL, "allocAligned: size must be >= 0 and alignment a power of two >= 8");
    return NULL;
  }
  void *memory = NULL;
  int rc = posix_memalign(&memory, (size_t)alignment, size > 0 ? (size_t)size : 1);
  if (rc != 0) {
    throw_errno(env, "allocAligned: posix_memalign failed", rc);
    return NULL;
  }
  memset(memory, 0, size > 0 ? (size_t)size : 1);
  napi_value buffer;
  napi_status status = napi_create_external_arraybuffer(env, memory, (size_t)size, free_aligned, NULL, &buffer);
  if (status != napi_ok) {
    /* Runtimes that forbid external buffers: fall back to a copy is impossible (alignment), so fail clearly. */
    free(memory);
    napi_throw_error(env, NULL, "allocAligned: this runtime does not allow external ArrayBuffers");
    return NULL;
  }
  return buffer;
}

/* alignmentGap(view, alignment): bytes from the start of a Uint8Array (or Buffer) to the next address that is a
 * multiple of alignment; 0 when the view is aligned. Lets shared memory be laid out for O_DIRECT. */
static napi_value alignment_gap(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t alignment = 0;
  bool is_typed = false;
  if (argc < 2 || napi_is_typedarray(env, argv[0], &is_typed) != napi_ok || !is_typed) {
    napi_throw_type_error(env, NULL, "alignmentGap: view must be a Uint8Array");
    return NULL;
  }
  if (!arg_int64(env, argv[1], "alignment", &alignment)) return NULL;
  if (alignment <= 0 || (alignment & (alignment - 1)) != 0) {
    napi_throw_range_error(env, NULL, "alignmentGap: alignment must be a power of two");
    return NULL;
  }
  void *data = NULL;
  size_t length = 0;
  napi_typedarray_type type;
  napi_get_typedarray_info(env, argv[0], &type, &length, &data, NULL, NULL);
  uintptr_t address = (uintptr_t)data;
  napi_value result;
  napi_create_uint32(env, (uint32_t)((alignment - (int64_t)(address % (uintptr_t)alignment)) % alignment), &result);
  return result;
}

/* peerCredentials(fd): {pid, uid, gid} of the process at the other end of a connected unix socket. */
static napi_value peer_credentials(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t fd;
  if (argc < 1 || !arg_int64(env, argv[0], "fd", &fd)) return NULL;
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt((int)fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    throw_errno(env, "peerCredentials: getsockopt(SO_PEERCRED) failed", errno);
    return NULL;
  }
  napi_value result, pid, uid, gid;
  napi_create_object(env, &result);
  napi_create_int32(env, cred.pid, &pid);
  napi_create_uint32(env, cred.uid, &uid);
  napi_create_uint32(env, cred.gid, &gid);
  napi_set_named_property(env, result, "pid", pid);
  napi_set_named_property(env, result, "uid", uid);
  napi_set_named_property(env, result, "gid", gid);
  return result;
}

/* Shared body of freeze/thaw: open the mount point's directory and issue the ioctl. */
static napi_value freeze_ioctl(napi_env env, napi_callback_info info, unsigned long request, const char *name) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[4096];
  if (argc < 1 || !arg_string(env, argv[0], "mountpoint", path, sizeof path)) return NULL;
  int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    char what[4200];
    snprintf(what, sizeof what, "%s %s: cannot open the mount point", name, path);
    throw_errno(env, what, errno);
    return NULL;
  }
  int rc = ioctl(fd, request, 0);
  int err = errno;
  close(fd);
  if (rc != 0) {
    char what[4200];
    snprintf(what, sizeof what, "%s %s failed", name, path);
    throw_errno(env, what, err);
    return NULL;
  }
  return NULL;
}

static napi_value freeze_fs(napi_env env, napi_callback_info info) { return freeze_ioctl(env, info, FIFREEZE, "freeze"); }
static napi_value thaw_fs(napi_env env, napi_callback_info info) { return freeze_ioctl(env, info, FITHAW, "thaw"); }

/* Async freeze/thaw: the ioctl runs on a libuv worker thread. Needed while a tap is armed: thawing writes the
 * superblock, that write may wait for JavaScript, and JavaScript must not be the thread stuck in the ioctl. */
typedef struct {
  napi_async_work work;
  napi_deferred deferred;
  unsigned long request;
  const char *name;
  char path[4096];
  int err;
  int open_failed;
} freeze_work;

static void freeze_execute(napi_env env, void *data) {
  freeze_work *w = data;
  int fd = open(w->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    w->err = errno;
    w->open_failed = 1;
    return;
  }
  if (ioctl(fd, w->request, 0) != 0) w->err = errno;
  close(fd);
}

static void freeze_complete(napi_env env, napi_status status, void *data) {
  freeze_work *w = data;
  if (w->err == 0) {
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_resolve_deferred(env, w->deferred, undefined);
  } else {
    char message[4400];
    snprintf(message, sizeof message, "%s %s%s: %s", w->name, w->path,
             w->open_failed ? ": cannot open the mount point" : " failed", strerror(w->err));
    napi_value msg, err, num;
    napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &err);
    napi_create_int32(env, w->err, &num);
    napi_set_named_property(env, err, "errno", num);
    napi_value code;
    napi_create_string_utf8(env, w->err == EBUSY ? "EBUSY" : w->err == EINVAL ? "EINVAL" : w->err == EPERM ? "EPERM" : w->err == EOPNOTSUPP ? "EOPNOTSUPP" : "EIO", NAPI_AUTO_LENGTH, &code);
    napi_set_named_property(env, err, "code", code);
    napi_reject_deferred(env, w->deferred, err);
  }
  napi_delete_async_work(env, w->work);
  free(w);
}

static napi_value freeze_async_common(napi_env env, napi_callback_info info, unsigned long request, const char *name) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  freeze_work *w = calloc(1, sizeof *w);
  if (!w) {
    throw_errno(env, name, ENOMEM);
    return NULL;
  }
  if (argc < 1 || !arg_string(env, argv[0], "mountpoint", w->path, sizeof w->path)) {
    free(w);
    return NULL;
  }
  w->request = request;
  w->name = name;
  napi_value promise, resource;
  napi_create_promise(env, &w->deferred, &promise);
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource);
  napi_create_async_work(env, NULL, resource, freeze_execute, freeze_complete, w, &w->work);
  napi_queue_async_work(env, w->work);
  return promise;
}

static napi_value freeze_fs_async(napi_env env, napi_callback_info info) {
  return freeze_async_common(env, info, FIFREEZE, "freeze");
}
static napi_value thaw_fs_async(napi_env env, napi_callback_info info) {
  return freeze_async_common(env, info, FITHAW, "thaw");
}

/* blockDeviceSize(fd): size in bytes of the block device open on fd (BLKGETSIZE64). */
static napi_value block_device_size(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t fd;
  if (argc < 1 || !arg_int64(env, argv[0], "fd", &fd)) return NULL;
  uint64_t size = 0;
  if (ioctl((int)fd, BLKGETSIZE64, &size) != 0) {
    throw_errno(env, "blockDeviceSize: ioctl(BLKGETSIZE64) failed (is it a block device?)", errno);
    return NULL;
  }
  napi_value result;
  napi_create_double(env, (double)size, &result);
  return result;
}

/* blockDeviceSectorSize(fd): logical sector size (BLKSSZGET). */
static napi_value block_device_sector_size(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  int64_t fd;
  if (argc < 1 || !arg_int64(env, argv[0], "fd", &fd)) return NULL;
  int sector = 0;
  if (ioctl((int)fd, BLKSSZGET, &sector) != 0) {
    throw_errno(env, "blockDeviceSectorSize: ioctl(BLKSSZGET) failed (is it a block device?)", errno);
    return NULL;
  }
  napi_value result;
  napi_create_int32(env, sector, &result);
  return result;
}

void register_system(napi_env env, napi_value exports) {
  EXPORT_FN(env, exports, "allocAligned", alloc_aligned);
  EXPORT_FN(env, exports, "alignmentGap", alignment_gap);
  EXPORT_FN(env, exports, "peerCredentials", peer_credentials);
  EXPORT_FN(env, exports, "freeze", freeze_fs);
  EXPORT_FN(env, exports, "thaw", thaw_fs);
  EXPORT_FN(env, exports, "freezeAsync", freeze_fs_async);
  EXPORT_FN(env, exports, "thawAsync", thaw_fs_async);
  EXPORT_FN(env, exports, "blockDeviceSize", block_device_size);
  EXPORT_FN(env, exports, "blockDeviceSectorSize", block_device_sector_size);
}
