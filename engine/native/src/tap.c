/* The FUSE tap: serves one file per protected volume from a multi-threaded libfuse3 loop running on its own
 * threads. Reads and writes pass straight through to the backing fd (pread/pwrite) in C. A write touching a
 * unit whose "intercept" bit is set first asks JavaScript (threadsafe function) and blocks on a condition
 * variable until JS completes it — that is where a snapshot session preserves old data, throttles or suspends
 * writers. Every write sets "changed" bits (changed-block tracking). Without a backing fd (mounting a restore
 * point) every read is answered by JavaScript.
 *
 * Consistency: writes hold a read lock on `arm_lock` from the intercept check to the end of pwrite; arming
 * takes the write lock, so each write lands entirely before or entirely after the consistent point. No lock is
 * held while a FUSE thread waits for JavaScript (arming from JS would otherwise deadlock). */
#include "addon.h"

#include <errno.h>
#include <fuse.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct tap_request {
  uint64_t id;
  int kind; /* 0 write check, 1 read check, 2 read data from JS */
  uint64_t offset;
  uint64_t length;
  char *read_buf; /* kind 2: where JS's bytes go */
  size_t read_len;
  int done;
  int err;
  pthread_cond_t cond;
  struct tap_request *next;
} tap_request;

/* What the threadsafe function carries to the JS thread (a copy: the request may be failed meanwhile). */
typedef struct {
  uint64_t id;
  int kind;
  uint64_t offset;
  uint64_t length;
} tap_call;

typedef struct tap {
  char mount_dir[4096];
  char file_name[256];
  char file_path[260]; /* "/" + file_name */
  uint64_t size;
  int backing_fd;
  int read_only;

  struct fuse *fuse;
  pthread_t loop_thread;
  int loop_running;
  int loop_result;

  napi_threadsafe_function tsfn_access;
  napi_threadsafe_function tsfn_read;

  pthread_rwlock_t arm_lock;
  uint8_t *intercept_bits; /* NULL when disarmed */
  uint64_t intercept_units;
  unsigned intercept_shift;
  int intercept_reads;

  uint8_t *changed_bits;
  uint64_t changed_bytes;
  unsigned track_shift;

  pthread_mutex_t pending_lock; /* guards pending list, ids, stopping, each request's done/err/read_buf */
  tap_request *pending;
  uint64_t next_id;
  int stopping;

  uint64_t stat_reads, stat_writes, stat_intercepted, stat_bytes_read, stat_bytes_written;
} tap;

static unsigned log2_exact(uint64_t value) {
  unsigned shift = 0;
  while ((1ULL << shift) < value) shift++;
  return shift;
}

/* ---- requests to JavaScript ---- */

/* Sends a request to JS and waits for tapComplete / tapCompleteRead. Returns 0 or a positive errno. */
static int ask_js(tap *t, int kind, uint64_t offset, uint64_t length, char *read_buf, size_t *read_len) {
  tap_request request;
  memset(&request, 0, sizeof request);
  pthread_cond_init(&request.cond, NULL);
  request.kind = kind;
  request.offset = offset;
  request.length = length;
  request.read_buf = read_buf;

  pthread_mutex_lock(&t->pending_lock);
  if (t->stopping) {
    pthread_mutex_unlock(&t->pending_lock);
    pthread_cond_destroy(&request.cond);
    return EIO;
  }
  request.id = ++t->next_id;
  request.next = t->pending;
  t->pending = &request;
  pthread_mutex_unlock(&t->pending_lock);

  tap_call *call = malloc(sizeof *call);
  int err = 0;
  if (!call) {
    err = ENOMEM;
  } else {
    call->id = request.id;
    call->kind = kind;
    call->offset = offset;
    call->length = length;
    napi_threadsafe_function tsfn = kind == 2 ? t->tsfn_read : t->tsfn_access;
    if (napi_call_threadsafe_function(tsfn, call, napi_tsfn_blocking) != napi_ok) {
      free(call);
      err = EIO;
    }
  }

  pthread_mutex_lock(&t->pending_lock);
  if (err == 0) {
    while (!request.done) pthread_cond_wait(&request.cond, &t->pending_lock);
    err = request.err;
    if (read_len) *read_len = request.read_len;
  }
  /* Unlink from the pending list (it may already be unlinked by a completion). */
  for (tap_request **link = &t->pending; *link; link = &(*link)->next) {
    if (*link == &request) {
      *link = request.next;
      break;
    }
  }
  pthread_mutex_unlock(&t->pending_lock);
  pthread_cond_destroy(&request.cond);
  __atomic_fetch_add(&t->stat_intercepted, 1, __ATOMIC_RELAXED);
  return err;
}

/* Caller holds pending_lock. */
static tap_request *find_pending(tap *t, uint64_t id) {
  for (tap_request *r = t->pending; r; r = r->next)
    if (r->id == id && !r->done) return r;
  return NULL;
}

/* Caller holds pending_lock. Hands the request its outcome and wakes the FUSE thread waiting in ask_js. */
static void finish_request(tap_request *r, int err) {
  r->done = 1;
  r->err = err;
  pthread_cond_signal(&r->cond);
}

/* ---- bitmaps ---- */

static int bit_test(const uint8_t *bits, uint64_t index) {
  return (__atomic_load_n(&bits[index >> 3], __ATOMIC_ACQUIRE) >> (index & 7)) & 1;
}
static void bit_set(uint8_t *bits, uint64_t index) {
  __atomic_fetch_or(&bits[index >> 3], (uint8_t)(1u << (index & 7)), __ATOMIC_RELEASE);
}
static void bit_clear(uint8_t *bits, uint64_t index) {
  __atomic_fetch_and(&bits[index >> 3], (uint8_t)~(1u << (index & 7)), __ATOMIC_RELEASE);
}

/* Caller holds arm_lock (read). True when any unit of [offset, offset+length) has its intercept bit set. */
static int needs_interception(tap *t, uint64_t offset, uint64_t length, int is_read) {
  if (!t->intercept_bits || length == 0) return 0;
  if (is_read && !t->intercept_reads) return 0;
  uint64_t first = offset >> t->intercept_shift;
  uint64_t last = (offset + length - 1) >> t->intercept_shift;
  if (last >= t->intercept_units) last = t->intercept_units - 1;
  for (uint64_t unit = first; unit <= last; unit++)
    if (bit_test(t->intercept_bits, unit)) return 1;
  return 0;
}

static void settle_units(tap *t, uint64_t offset, uint64_t length) {
  if (!t->intercept_bits || length == 0) return;
  uint64_t first = offset >> t->intercept_shift;
  uint64_t last = (offset + length - 1) >> t->intercept_shift;
  if (last >= t->intercept_units) last = t->intercept_units - 1;
  for (uint64_t unit = first; unit <= last; unit++) bit_clear(t->intercept_bits, unit);
}

static void mark_changed(tap *t, uint64_t offset, uint64_t length) {
  if (length == 0) return;
  uint64_t first = offset >> t->track_shift;
  uint64_t last = (offset + length - 1) >> t->track_shift;
  for (uint64_t unit = first; unit <= last; unit++) bit_set(t->changed_bits, unit);
}

/* Takes arm_lock (read) with the guarantee that no unit of the range needs JS; asks JS (unlocked) until so. */
static int lock_passable(tap *t, uint64_t offset, uint64_t length, int is_read) {
  for (;;) {
    pthread_rwlock_rdlock(&t->arm_lock);
    if (!needs_interception(t, offset, length, is_read)) return 0;
    pthread_rwlock_unlock(&t->arm_lock);
    int err = ask_js(t, is_read ? 1 : 0, offset, length, NULL, NULL);
    if (err) return err;
    /* JS said the access may proceed: its units need no further interception this session. Clear under the
     * read lock so a concurrent (re)arm — which holds the write lock — is never undone. */
    pthread_rwlock_rdlock(&t->arm_lock);
    settle_units(t, offset, length);
    pthread_rwlock_unlock(&t->arm_lock);
  }
}

/* ---- FUSE operations ---- */

static tap *current_tap(void) { return (tap *)fuse_get_context()->private_data; }

static int op_getattr(const char *path, struct stat *st, struct fuse_file_info *fi) {
  tap *t = current_tap();
  memset(st, 0, sizeof *st);
  st->st_uid = getuid();
  st->st_gid = getgid();
  if (strcmp(path, "/") == 0) {
    st->st_mode = S_IFDIR | 0700;
    st->st_nlink = 2;
    return 0;
  }
  if (strcmp(path, t->file_path) == 0) {
    st->st_mode = S_IFREG | (t->read_only ? 0400 : 0600);
    st->st_nlink = 1;
    st->st_size = (off_t)t->size;
    st->st_blksize = 4096;
    st->st_blocks = (blkcnt_t)((t->size + 511) / 512);
    return 0;
  }
  return -ENOENT;
}

static int op_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset, struct fuse_file_info *fi,
                      enum fuse_readdir_flags flags) {
  tap *t = current_tap();
  if (strcmp(path, "/") != 0) return -ENOENT;
  filler(buf, ".", NULL, 0, 0);
  filler(buf, "..", NULL, 0, 0);
  filler(buf, t->file_name, NULL, 0, 0);
  return 0;
}

static int op_open(const char *path, struct fuse_file_info *fi) {
  tap *t = current_tap();
  if (strcmp(path, t->file_path) != 0) return -ENOENT;
  if (t->read_only && (fi->flags & O_ACCMODE) != O_RDONLY) return -EROFS;
  if (fi->flags & O_TRUNC) return -EPERM;
  /* No page cache of our own: the loop device above and the device below cache already. */
  fi->direct_io = 1;
  return 0;
}

static int op_truncate(const char *path, off_t size, struct fuse_file_info *fi) {
  tap *t = current_tap();
  return (uint64_t)size == t->size ? 0 : -EPERM;
}

static int op_read(const char *path, char *buf, size_t size, off_t offset, struct fuse_file_info *fi) {
  tap *t = current_tap();
  if ((uint64_t)offset >= t->size) return 0;
  if ((uint64_t)offset + size > t->size) size = (size_t)(t->size - (uint64_t)offset);
  __atomic_fetch_add(&t->stat_reads, 1, __ATOMIC_RELAXED);
  if (t->backing_fd < 0) {
    size_t got = 0;
    int err = ask_js(t, 2, (uint64_t)offset, size, buf, &got);
    if (err) return -err;
    __atomic_fetch_add(&t->stat_bytes_read, size, __ATOMIC_RELAXED);
    return (int)size; /* shorter answers were zero-filled */
  }
  int err = lock_passable(t, (uint64_t)offset, size, 1);
  if (err) return -err;
  size_t done = 0;
  while (done < size) {
    ssize_t n = pread(t->backing_fd, buf + done, size - done, offset + (off_t)done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      pthread_rwlock_unlock(&t->arm_lock);
      return -e;
    }
    if (n == 0) break;
    done += (size_t)n;
  }
  pthread_rwlock_unlock(&t->arm_lock);
  __atomic_fetch_add(&t->stat_bytes_read, done, __ATOMIC_RELAXED);
  return (int)done;
}

static int op_write(const char *path, const char *buf, size_t size, off_t offset, struct fuse_file_info *fi) {
  tap *t = current_tap();
  if (t->read_only || t->backing_fd < 0) return -EROFS;
  if ((uint64_t)offset >= t->size) return -ENOSPC;
  if ((uint64_t)offset + size > t->size) size = (size_t)(t->size - (uint64_t)offset);
  __atomic_fetch_add(&t->stat_writes, 1, __ATOMIC_RELAXED);
  int err = lock_passable(t, (uint64_t)offset, size, 0);
  if (err) return -err;
  /* Tracking first: a bit set for a write that then fails only costs a re-read, never a missed change. */
  mark_changed(t, (uint64_t)offset, size);
  size_t done = 0;
  while (done < size) {
    ssize_t n = pwrite(t->backing_fd, buf + done, size - done, offset + (off_t)done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      pthread_rwlock_unlock(&t->arm_lock);
      return -e;
    }
    done += (size_t)n;
  }
  pthread_rwlock_unlock(&t->arm_lock);
  __atomic_fetch_add(&t->stat_bytes_written, done, __ATOMIC_RELAXED);
  return (int)done;
}

static int op_fsync(const char *path, int datasync, struct fuse_file_info *fi) {
  tap *t = current_tap();
  if (t->backing_fd < 0) return 0;
  return fdatasync(t->backing_fd) == 0 ? 0 : -errno;
}

static int op_flush(const char *path, struct fuse_file_info *fi) { return 0; }

static int op_statfs(const char *path, struct statvfs *st) {
  memset(st, 0, sizeof *st);
  st->f_bsize = 4096;
  st->f_namemax = 255;
  return 0;
}

static void *op_init(struct fuse_conn_info *conn, struct fuse_config *cfg) {
  cfg->kernel_cache = 0;
  cfg->direct_io = 1;
  cfg->attr_timeout = 3600;
  cfg->entry_timeout = 3600;
  cfg->use_ino = 0;
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
  return fuse_get_context()->private_data;
}

static const struct fuse_operations tap_operations = {
  .init = op_init,
  .getattr = op_getattr,
  .readdir = op_readdir,
  .open = op_open,
  .truncate = op_truncate,
  .read = op_read,
  .write = op_write,
  .fsync = op_fsync,
  .flush = op_flush,
  .statfs = op_statfs,
};

static void *loop_main(void *arg) {
  tap *t = arg;
  struct fuse_loop_config *config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(config, 32);
  fuse_loop_cfg_set_idle_threads(config, 16);
  fuse_loop_cfg_set_clone_fd(config, 0);
  t->loop_result = fuse_loop_mt(t->fuse, config);
  fuse_loop_cfg_destroy(config);
  return NULL;
}

/* ---- JS side ---- */

static void call_js_access(napi_env env, napi_value js_callback, void *context, void *data) {
  tap_call *call = data;
  if (env && js_callback) {
    napi_value argv[4], undefined;
    napi_create_string_utf8(env, call->kind == 1 ? "read" : "write", NAPI_AUTO_LENGTH, &argv[0]);
    napi_create_double(env, (double)call->offset, &argv[1]);
    napi_create_double(env, (double)call->length, &argv[2]);
    napi_create_double(env, (double)call->id, &argv[3]);
    napi_get_undefined(env, &undefined);
    napi_call_function(env, undefined, js_callback, 4, argv, NULL);
  }
  free(call);
}

static void call_js_read(napi_env env, napi_value js_callback, void *context, void *data) {
  tap_call *call = data;
  if (env && js_callback) {
    napi_value argv[3], undefined;
    napi_create_double(env, (double)call->offset, &argv[0]);
    napi_create_double(env, (double)call->length, &argv[1]);
    napi_create_double(env, (double)call->id, &argv[2]);
    napi_get_undefined(env, &undefined);
    napi_call_function(env, undefined, js_callback, 3, argv, NULL);
  }
  free(call);
}

static void fail_all_pending(tap *t) {
  pthread_mutex_lock(&t->pending_lock);
  t->stopping = 1;
  for (tap_request *r = t->pending; r; r = r->next) {
    if (!r->done) finish_request(r, EIO);
  }
  pthread_mutex_unlock(&t->pending_lock);
}

static void tap_free(tap *t) {
  free(t->intercept_bits);
  free(t->changed_bits);
  pthread_rwlock_destroy(&t->arm_lock);
  pthread_mutex_destroy(&t->pending_lock);
  free(t);
}

static void stop_tap(tap *t) {
  if (!t->loop_running) return;
  fail_all_pending(t);
  fuse_exit(t->fuse);
  /* Unmounting (lazily, as root) ends the kernel connection, which wakes the loop threads blocked reading it. */
  fuse_unmount(t->fuse);
  pthread_join(t->loop_thread, NULL);
  fuse_destroy(t->fuse);
  t->fuse = NULL;
  t->loop_running = 0;
  napi_release_threadsafe_function(t->tsfn_access, napi_tsfn_abort);
  if (t->tsfn_read) napi_release_threadsafe_function(t->tsfn_read, napi_tsfn_abort);
}

static void finalize_tap(napi_env env, void *data, void *hint) {
  tap *t = data;
  if (t->loop_running) {
    /* Collected while running: only possible if JS dropped every reference; keep the mount alive rather than
     * block the finalizer (the process exit unmounts it). */
    return;
  }
  tap_free(t);
}

static tap *get_tap(napi_env env, napi_value value) {
  void *data = NULL;
  if (napi_get_value_external(env, value, &data) != napi_ok || !data) {
    napi_throw_type_error(env, NULL, "expected a tap handle from tapStart");
    return NULL;
  }
  return data;
}

/* The arguments of a call whose first is a tap handle: argv takes up to *argc of them and *argc becomes how many
 * were passed. Returns the tap, or NULL: having thrown for something that is not a handle, quietly for none. */
static tap *tap_call_args(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_get_cb_info(env, info, argc, argv, NULL, NULL);
  return *argc >= 1 ? get_tap(env, argv[0]) : NULL;
}

static int get_prop(napi_env env, napi_value object, const char *name, napi_value *out) {
  bool has = false;
  napi_has_named_property(env, object, name, &has);
  if (!has) return 0;
  napi_get_named_property(env, object, name, out);
  napi_valuetype type;
  napi_typeof(env, *out, &type);
  return type != napi_undefined && type != napi_null;
}

/* tapStart({mountDir, fileName, size, backingFd, readOnly, trackUnitSize, onAccess, onRead?}) */
static napi_value tap_start(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value options;
  napi_get_cb_info(env, info, &argc, &options, NULL, NULL);
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "tapStart needs an options object");
    return NULL;
  }
  napi_value v, on_access, on_read = NULL;
  int64_t size = 0, backing_fd = -1, track_unit = 65536;
  bool read_only = false;
  tap *t = calloc(1, sizeof *t);
  if (!t) {
    throw_errno(env, "tapStart", ENOMEM);
    return NULL;
  }
  if (!get_prop(env, options, "mountDir", &v) || !arg_string(env, v, "mountDir", t->mount_dir, sizeof t->mount_dir))
    goto bad;
  if (!get_prop(env, options, "fileName", &v) || !arg_string(env, v, "fileName", t->file_name, sizeof t->file_name))
    goto bad;
  if (!get_prop(env, options, "size", &v) || !arg_int64(env, v, "size", &size)) goto bad;
  if (get_prop(env, options, "backingFd", &v) && !arg_int64(env, v, "backingFd", &backing_fd)) goto bad;
  if (get_prop(env, options, "readOnly", &v)) napi_get_value_bool(env, v, &read_only);
  if (get_prop(env, options, "trackUnitSize", &v) && !arg_int64(env, v, "trackUnitSize", &track_unit)) goto bad;
  if (!get_prop(env, options, "onAccess", &on_access)) {
    napi_throw_type_error(env, NULL, "tapStart: onAccess callback is required");
    goto bad;
  }
  if (get_prop(env, options, "onRead", &v)) on_read = v;
  if (backing_fd < 0 && !on_read) {
    napi_throw_type_error(env, NULL, "tapStart: without backingFd, an onRead callback is required");
    goto bad;
  }
  if (size <= 0 || track_unit < 512 || (track_unit & (track_unit - 1)) != 0 || strchr(t->file_name, '/')) {
    napi_throw_range_error(env, NULL, "tapStart: size must be > 0, trackUnitSize a power of two >= 512, fileName a plain name");
    goto bad;
  }
  t->size = (uint64_t)size;
  t->backing_fd = (int)backing_fd;
  t->read_only = read_only;
  snprintf(t->file_path, sizeof t->file_path, "/%s", t->file_name);
  t->track_shift = log2_exact((uint64_t)track_unit);
  uint64_t track_units = (t->size + (uint64_t)track_unit - 1) >> t->track_shift;
  t->changed_bytes = (track_units + 7) / 8;
  t->changed_bits = calloc(t->changed_bytes, 1);
  pthread_rwlock_init(&t->arm_lock, NULL);
  pthread_mutex_init(&t->pending_lock, NULL);

  napi_value resource_name;
  napi_create_string_utf8(env, "diskline-tap", NAPI_AUTO_LENGTH, &resource_name);
  if (napi_create_threadsafe_function(env, on_access, NULL, resource_name, 0, 1, NULL, NULL, NULL, call_js_access,
                                      &t->tsfn_access) != napi_ok) {
    napi_throw_error(env, NULL, "tapStart: cannot create the threadsafe callback");
    tap_free(t);
    return NULL;
  }
  if (on_read && napi_create_threadsafe_function(env, on_read, NULL, resource_name, 0, 1, NULL, NULL, NULL,
                                                 call_js_read, &t->tsfn_read) != napi_ok) {
    napi_release_threadsafe_function(t->tsfn_access, napi_tsfn_abort);
    napi_throw_error(env, NULL, "tapStart: cannot create the threadsafe callback");
    tap_free(t);
    return NULL;
  }

  char *fuse_argv[] = {"diskline-tap", "-o", "fsname=diskline-tap,subtype=diskline,allow_other", NULL};
  struct fuse_args args = FUSE_ARGS_INIT(3, fuse_argv);
  t->fuse = fuse_new(&args, &tap_operations, sizeof tap_operations, t);
  if (!t->fuse) {
    napi_release_threadsafe_function(t->tsfn_access, napi_tsfn_abort);
    if (t->tsfn_read) napi_release_threadsafe_function(t->tsfn_read, napi_tsfn_abort);
    napi_throw_error(env, NULL, "tapStart: libfuse refused the options (fuse_new failed)");
    tap_free(t);
    return NULL;
  }
  if (fuse_mount(t->fuse, t->mount_dir) != 0) {
    fuse_destroy(t->fuse);
    napi_release_threadsafe_function(t->tsfn_access, napi_tsfn_abort);
    if (t->tsfn_read) napi_release_threadsafe_function(t->tsfn_read, napi_tsfn_abort);
    char message[4300];
    snprintf(message, sizeof message,
             "tapStart: cannot mount FUSE on %s (is /dev/fuse present and are we root? is the directory empty?)",
             t->mount_dir);
    napi_throw_error(env, NULL, message);
    tap_free(t);
    return NULL;
  }
  if (pthread_create(&t->loop_thread, NULL, loop_main, t) != 0) {
    fuse_unmount(t->fuse);
    fuse_destroy(t->fuse);
    napi_release_threadsafe_function(t->tsfn_access, napi_tsfn_abort);
    if (t->tsfn_read) napi_release_threadsafe_function(t->tsfn_read, napi_tsfn_abort);
    throw_errno(env, "tapStart: cannot start the FUSE thread", EAGAIN);
    tap_free(t);
    return NULL;
  }
  t->loop_running = 1;
  napi_value handle;
  napi_create_external(env, t, finalize_tap, NULL, &handle);
  return handle;

bad:
  free(t->changed_bits);
  free(t);
  return NULL;
}

/* tapArm(tap, unitSize | null, interceptReads, resetChanged): Uint8Array | null — arms every unit (all bits set)
 * or disarms; with resetChanged, atomically returns the changed-block bitmap and clears it. */
static napi_value tap_arm(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  tap *t = tap_call_args(env, info, &argc, argv);
  if (!t) return NULL;
  napi_valuetype type = napi_null;
  if (argc >= 2) napi_typeof(env, argv[1], &type);
  int64_t unit_size = 0;
  if (type != napi_null && type != napi_undefined && !arg_int64(env, argv[1], "unitSize", &unit_size)) return NULL;
  bool intercept_reads = false, reset_changed = false;
  if (argc >= 3) napi_get_value_bool(env, argv[2], &intercept_reads);
  if (argc >= 4) napi_get_value_bool(env, argv[3], &reset_changed);
  if (unit_size && (unit_size < 512 || (unit_size & (unit_size - 1)) != 0)) {
    napi_throw_range_error(env, NULL, "tapArm: unitSize must be a power of two >= 512");
    return NULL;
  }
  uint8_t *bits = NULL;
  uint64_t units = 0;
  unsigned shift = 0;
  if (unit_size) {
    shift = log2_exact((uint64_t)unit_size);
    units = (t->size + (uint64_t)unit_size - 1) >> shift;
    bits = malloc((units + 7) / 8);
    if (!bits) {
      throw_errno(env, "tapArm", ENOMEM);
      return NULL;
    }
    memset(bits, 0xff, (units + 7) / 8);
  }
  napi_value changed = NULL;
  void *changed_data = NULL;
  if (reset_changed) napi_create_buffer(env, t->changed_bytes, &changed_data, &changed);

  pthread_rwlock_wrlock(&t->arm_lock);
  uint8_t *old = t->intercept_bits;
  t->intercept_bits = bits;
  t->intercept_units = units;
  t->intercept_shift = shift;
  t->intercept_reads = intercept_reads;
  if (reset_changed) {
    memcpy(changed_data, t->changed_bits, t->changed_bytes);
    memset(t->changed_bits, 0, t->changed_bytes);
  }
  pthread_rwlock_unlock(&t->arm_lock);
  free(old);
  if (changed) return changed;
  napi_value null_value;
  napi_get_null(env, &null_value);
  return null_value;
}

/* tapSettle / tapMark(tap, firstUnit, count): clear / set intercept bits. */
static napi_value tap_bits(napi_env env, napi_callback_info info, int set) {
  size_t argc = 3;
  napi_value argv[3];
  tap *t = tap_call_args(env, info, &argc, argv);
  if (!t) return NULL;
  int64_t first, count;
  if (argc < 3 || !arg_int64(env, argv[1], "firstUnit", &first) || !arg_int64(env, argv[2], "count", &count))
    return NULL;
  pthread_rwlock_rdlock(&t->arm_lock);
  if (t->intercept_bits && first >= 0) {
    for (uint64_t unit = (uint64_t)first; unit < (uint64_t)(first + count) && unit < t->intercept_units; unit++) {
      if (set)
        bit_set(t->intercept_bits, unit);
      else
        bit_clear(t->intercept_bits, unit);
    }
  }
  pthread_rwlock_unlock(&t->arm_lock);
  return NULL;
}
static napi_value tap_settle(napi_env env, napi_callback_info info) { return tap_bits(env, info, 0); }
static napi_value tap_mark(napi_env env, napi_callback_info info) { return tap_bits(env, info, 1); }

/* tapComplete(tap, token, errno) */
static napi_value tap_complete(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  tap *t = tap_call_args(env, info, &argc, argv);
  if (!t) return NULL;
  int64_t id, err = 0;
  if (argc < 2 || !arg_int64(env, argv[1], "token", &id)) return NULL;
  if (argc >= 3 && !arg_int64(env, argv[2], "errno", &err)) return NULL;
  pthread_mutex_lock(&t->pending_lock);
  tap_request *r = find_pending(t, (uint64_t)id);
  if (r) finish_request(r, (int)err);
  pthread_mutex_unlock(&t->pending_lock);
  return NULL;
}

/* tapCompleteRead(tap, token, data | null, errno) */
static napi_value tap_complete_read(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  tap *t = tap_call_args(env, info, &argc, argv);
  if (!t) return NULL;
  int64_t id, err = 0;
  if (argc < 3 || !arg_int64(env, argv[1], "token", &id)) return NULL;
  if (argc >= 4 && !arg_int64(env, argv[3], "errno", &err)) return NULL;
  void *data = NULL;
  size_t length = 0;
  bool is_typed = false;
  napi_is_typedarray(env, argv[2], &is_typed);
  if (is_typed) {
    napi_typedarray_type type;
    size_t count, byte_offset;
    napi_value array_buffer;
    napi_get_typedarray_info(env, argv[2], &type, &count, &data, &array_buffer, &byte_offset);
    length = count; /* Uint8Array / Buffer: one byte per element */
  }
  pthread_mutex_lock(&t->pending_lock);
  tap_request *r = find_pending(t, (uint64_t)id);
  if (r) {
    size_t copy = length < r->length ? length : (size_t)r->length;
    if (!err && r->read_buf) {
      if (copy) memcpy(r->read_buf, data, copy);
      if (copy < r->length) memset(r->read_buf + copy, 0, (size_t)r->length - copy);
    }
    r->read_len = copy;
    finish_request(r, (int)err);
  }
  pthread_mutex_unlock(&t->pending_lock);
  return NULL;
}

/* tapChanged(tap, reset): copy of the changed-block bitmap. */
static napi_value tap_changed(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  tap *t = tap_call_args(env, info, &argc, argv);
  if (!t) return NULL;
  bool reset = false;
  if (argc >= 2) napi_get_value_bool(env, argv[1], &reset);
  napi_value result;
  void *data;
  napi_create_buffer(env, t->changed_bytes, &data, &result);
  if (reset) pthread_rwlock_wrlock(&t->arm_lock);
  for (uint64_t i = 0; i < t->changed_bytes; i++) ((uint8_t *)data)[i] = __atomic_load_n(&t->changed_bits[i], __ATOMIC_ACQUIRE);
  if (reset) {
    memset(t->changed_bits, 0, t->changed_bytes);
    pthread_rwlock_unlock(&t->arm_lock);
  }
  return result;
}

static napi_value tap_stats(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tap *t = tap_call_args(env, info, &argc, argv);
  if (!t) return NULL;
  napi_value result, v;
  napi_create_object(env, &result);
#define STAT(name, field)                                                           \
  napi_create_double(env, (double)__atomic_load_n(&t->field, __ATOMIC_RELAXED), &v); \
  napi_set_named_property(env, result, name, v);
  STAT("reads", stat_reads)
  STAT("writes", stat_writes)
  STAT("interceptedCalls", stat_intercepted)
  STAT("bytesRead", stat_bytes_read)
  STAT("bytesWritten", stat_bytes_written)
#undef STAT
  return result;
}

static napi_value tap_stop(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tap *t = tap_call_args(env, info, &argc, argv);
  if (!t) return NULL;
  stop_tap(t);
  return NULL;
}

void register_tap(napi_env env, napi_value exports) {
  EXPORT_FN(env, exports, "tapStart", tap_start);
  EXPORT_FN(env, exports, "tapArm", tap_arm);
  EXPORT_FN(env, exports, "tapSettle", tap_settle);
  EXPORT_FN(env, exports, "tapMark", tap_mark);
  EXPORT_FN(env, exports, "tapComplete", tap_complete);
  EXPORT_FN(env, exports, "tapCompleteRead", tap_complete_read);
  EXPORT_FN(env, exports, "tapChanged", tap_changed);
  EXPORT_FN(env, exports, "tapStats", tap_stats);
  EXPORT_FN(env, exports, "tapStop", tap_stop);
}
