/* diskline-tap-helper: serves one attached volume (a disk or image) as one FUSE file, in a process of its own, so
 * that the volume outlives the engine (a crash, a kill, an upgrade). It owns the FUSE session, the pass-through
 * (pread/pwrite on the backing fd), the changed-block bitmap, the intercept bitmap of a running backup and the
 * hold of writes to armed units; the engine controls it over a unix socket (engine/tap/helper-channel.ts holds
 * the other end and the wire format).
 *
 * When an armed unit is written, the helper asks the engine (ACCESS) and holds the write until the engine
 * answers (COMPLETE). When the engine's connection ends for any reason (EOF), the helper drops the snapshot
 * (disarms every unit), thaws what it froze, releases every held writer, and keeps serving; the changed-block
 * bitmap is marked lost if a backup was armed. A new engine connects to the same socket and adopts the volume.
 *
 * Freeze and thaw run here (on the freezer thread), never in the engine: a freeze cannot outlive the engine's
 * connection nor its deadline.
 *
 * The I/O path (read, write, the wait for the engine) allocates nothing: requests live on the FUSE thread's
 * stack, read buffers are one per thread; memory is locked (mlockall) and the process is an I/O flusher
 * (PR_SET_IO_FLUSHER) so reclaim never waits on writes that must pass through it.
 *
 * Usage: diskline-tap-helper SOCKET MOUNTDIR SIZE TRACKUNIT SOURCE, backing fd on 3; prints "ready\n" on
 * stdout once mounted and listening, or one line saying why not and exits 1 (3: source already served). */
#define FUSE_USE_VERSION 314
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <linux/fs.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef PR_SET_IO_FLUSHER
#define PR_SET_IO_FLUSHER 57
#endif

/* ---- wire format (mirrored in engine/tap/helper-channel.ts) ----
 * Every frame: u32 type, u32 sequence, u32 payload length, then the payload; native byte order. */
enum {
  MSG_HELLO = 1,      /* -> REPLY info */
  MSG_ARM = 2,        /* u32 unitSize, u32 resetChanged, u8 generation[16] -> REPLY [changed bitmap] */
  MSG_DISARM = 3,     /* -> REPLY */
  MSG_SETTLE = 4,     /* u64 firstUnit, u64 count; no reply */
  MSG_MARK = 5,       /* u64 firstUnit, u64 count; no reply */
  MSG_COMPLETE = 6,   /* u64 id, i32 errno; no reply */
  MSG_CHANGED = 7,    /* -> REPLY changed bitmap */
  MSG_STATS = 8,      /* -> REPLY 5 x u64 */
  MSG_FREEZE = 9,     /* u32 deadlineMs, mount point path -> REPLY (after FIFREEZE) */
  MSG_THAW = 10,      /* -> REPLY (errno ETIME when the deadline thawed first) */
  MSG_GENERATION = 11, /* u8 generation[16] -> REPLY: tracking starts (the bitmap holds changes since it) */
  MSG_RELEASE = 12,   /* -> REPLY: the engine leaves on purpose (tracking kept unless armed) */
  MSG_STOP = 13,      /* -> REPLY once unmounted and flushed; then the helper exits */
  MSG_ACCESS = 101,   /* helper -> engine: u64 id, u64 offset, u64 length */
  MSG_REPLY = 102,    /* helper -> engine: i32 errno, u32 0, then the body */
};

#define FLAG_ARMED 1u
#define FLAG_TRACKING_LOST 2u
#define FLAG_FROZEN 4u
#define MAX_FROZEN 16
#define READ_BUFFER_BYTES (1u << 20)

typedef struct held_write {
  uint64_t id;
  int done;
  int err;
  pthread_cond_t cond;
  struct held_write *next;
} held_write;

static struct {
  const char *socket_path;
  const char *mount_dir;
  const char *source;
  uint64_t size;
  int backing_fd;
  struct fuse_session *session;
  pthread_t loop_thread;
  int wake_pipe[2]; /* the loop thread writes when the FUSE session ends */

  pthread_rwlock_t arm_lock; /* writes hold it (read) from the intercept check to the end of pwrite */
  uint8_t *intercept_bits;   /* NULL when disarmed */
  uint64_t intercept_units;
  unsigned intercept_shift;

  uint8_t *changed_bits;
  uint64_t changed_bytes;
  unsigned track_shift;
  uint64_t track_unit;
  uint8_t generation[16];
  int tracking_lost;

  pthread_mutex_t engine_lock; /* guards engine_fd, held list, next_id; serializes frames sent */
  int engine_fd;               /* -1: no engine connected */
  held_write *held;
  uint64_t next_id;

  pthread_mutex_t freeze_lock;
  pthread_cond_t freeze_cond;
  int frozen_fds[MAX_FROZEN];
  int frozen_count;
  char freeze_path[4096];
  uint32_t freeze_seq, thaw_seq;
  int freeze_wanted, thaw_wanted, thaw_now; /* commands to the freezer thread */
  int deadline_thawed;                      /* the deadline (or the engine leaving) thawed: the point failed */
  uint64_t engine_epoch;                    /* counts engines gone; a freeze asked by a gone engine is undone */
  uint64_t freeze_epoch;
  struct timespec freeze_deadline;

  pthread_key_t read_buffer_key;
  uint64_t stat_reads, stat_writes, stat_intercepted, stat_bytes_read, stat_bytes_written;
} H;

static unsigned log2_exact(uint64_t value) {
  unsigned shift = 0;
  while ((1ULL << shift) < value) shift++;
  return shift;
}

/* ---- frames to the engine ---- */

/* Caller holds engine_lock. Sends all of header + body; errors end nothing here (the reader sees EOF). */
static void send_all(int fd, const void *data, size_t length) {
  const char *bytes = data;
  while (length > 0 && fd >= 0) {
    ssize_t n = send(fd, bytes, length, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;
    }
    bytes += n;
    length -= (size_t)n;
  }
}

static void send_frame_locked(uint32_t type, uint32_t seq, const void *a, uint32_t a_len, const void *b,
                              uint32_t b_len) {
  uint32_t header[3] = {type, seq, a_len + b_len};
  send_all(H.engine_fd, header, sizeof header);
  if (a_len) send_all(H.engine_fd, a, a_len);
  if (b_len) send_all(H.engine_fd, b, b_len);
}

static void send_reply(uint32_t seq, int err, const void *body, uint32_t body_len) {
  int32_t head[2] = {err, 0};
  pthread_mutex_lock(&H.engine_lock);
  send_frame_locked(MSG_REPLY, seq, head, sizeof head, body, body_len);
  pthread_mutex_unlock(&H.engine_lock);
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

/* Caller holds arm_lock (read). */
static int needs_interception(uint64_t offset, uint64_t length) {
  if (!H.intercept_bits || length == 0) return 0;
  uint64_t first = offset >> H.intercept_shift;
  uint64_t last = (offset + length - 1) >> H.intercept_shift;
  if (last >= H.intercept_units) last = H.intercept_units - 1;
  for (uint64_t unit = first; unit <= last; unit++)
    if (bit_test(H.intercept_bits, unit)) return 1;
  return 0;
}

/* Caller holds arm_lock (read or write). */
static void set_intercept_bits(uint64_t first, uint64_t count, int set) {
  if (!H.intercept_bits) return;
  for (uint64_t unit = first; unit < first + count && unit < H.intercept_units; unit++) {
    if (set)
      bit_set(H.intercept_bits, unit);
    else
      bit_clear(H.intercept_bits, unit);
  }
}

static void mark_changed(uint64_t offset, uint64_t length) {
  if (length == 0) return;
  uint64_t first = offset >> H.track_shift;
  uint64_t last = (offset + length - 1) >> H.track_shift;
  for (uint64_t unit = first; unit <= last; unit++) bit_set(H.changed_bits, unit);
}

/* ---- held writes ---- */

/* Asks the engine whether a write touching armed units may proceed and holds the calling FUSE thread until it
 * answers or goes away. Returns 0 (proceed) or a positive errno. Without an engine the write proceeds: the
 * snapshot was dropped when the engine left. */
static int ask_engine(uint64_t offset, uint64_t length) {
  held_write request;
  memset(&request, 0, sizeof request);
  pthread_cond_init(&request.cond, NULL);
  pthread_mutex_lock(&H.engine_lock);
  if (H.engine_fd < 0) {
    pthread_mutex_unlock(&H.engine_lock);
    pthread_cond_destroy(&request.cond);
    return 0;
  }
  request.id = ++H.next_id;
  request.next = H.held;
  H.held = &request;
  uint64_t body[3] = {request.id, offset, length};
  send_frame_locked(MSG_ACCESS, 0, body, sizeof body, NULL, 0);
  while (!request.done) pthread_cond_wait(&request.cond, &H.engine_lock);
  for (held_write **link = &H.held; *link; link = &(*link)->next) {
    if (*link == &request) {
      *link = request.next;
      break;
    }
  }
  pthread_mutex_unlock(&H.engine_lock);
  pthread_cond_destroy(&request.cond);
  __atomic_fetch_add(&H.stat_intercepted, 1, __ATOMIC_RELAXED);
  return request.err;
}

/* Caller holds engine_lock. */
static void complete_held(uint64_t id, int err) {
  for (held_write *r = H.held; r; r = r->next) {
    if (r->id == id && !r->done) {
      r->done = 1;
      r->err = err;
      pthread_cond_signal(&r->cond);
      return;
    }
  }
}

/* Takes arm_lock (read) with no unit of the range armed; asks the engine (unlocked) until so. */
static int lock_passable(uint64_t offset, uint64_t length) {
  for (;;) {
    pthread_rwlock_rdlock(&H.arm_lock);
    if (!needs_interception(offset, length)) return 0;
    pthread_rwlock_unlock(&H.arm_lock);
    int err = ask_engine(offset, length);
    if (err) return err;
    /* Cleared under the read lock, so a concurrent (re)arm, which holds the write lock, is never undone. */
    pthread_rwlock_rdlock(&H.arm_lock);
    if (H.intercept_bits && length) {
      uint64_t first = offset >> H.intercept_shift;
      uint64_t last = (offset + length - 1) >> H.intercept_shift;
      set_intercept_bits(first, last - first + 1, 0);
    }
    pthread_rwlock_unlock(&H.arm_lock);
  }
}

/* ---- FUSE (low level: no paths, no allocation of ours per request) ---- */

#define ROOT_INO 1
#define FILE_INO 2
static const char FILE_NAME[] = "volume";

static void fill_attr(fuse_ino_t ino, struct stat *st) {
  memset(st, 0, sizeof *st);
  st->st_ino = ino;
  if (ino == ROOT_INO) {
    st->st_mode = S_IFDIR | 0700;
    st->st_nlink = 2;
  } else {
    st->st_mode = S_IFREG | 0600;
    st->st_nlink = 1;
    st->st_size = (off_t)H.size;
    st->st_blksize = 4096;
    st->st_blocks = (blkcnt_t)((H.size + 511) / 512);
  }
}

static void op_init(void *userdata, struct fuse_conn_info *conn) {
  conn->max_write = 1 << 20;
  conn->max_readahead = 1 << 20;
  conn->max_background = 64;
  conn->congestion_threshold = 48;
  if (conn->capable & FUSE_CAP_ASYNC_DIO) conn->want |= FUSE_CAP_ASYNC_DIO;
  if (conn->capable & FUSE_CAP_ASYNC_READ) conn->want |= FUSE_CAP_ASYNC_READ;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
  if (parent != ROOT_INO || strcmp(name, FILE_NAME) != 0) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  struct fuse_entry_param entry;
  memset(&entry, 0, sizeof entry);
  entry.ino = FILE_INO;
  entry.attr_timeout = 3600;
  entry.entry_timeout = 3600;
  fill_attr(FILE_INO, &entry.attr);
  fuse_reply_entry(req, &entry);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (ino != ROOT_INO && ino != FILE_INO) {
    fuse_reply_err(req, ENOENT);
    return;
  }
  struct stat st;
  fill_attr(ino, &st);
  fuse_reply_attr(req, &st, 3600);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
  /* Only a truncate to the same size (losetup does none) and time updates are accepted. */
  if ((to_set & FUSE_SET_ATTR_SIZE) && (uint64_t)attr->st_size != H.size) {
    fuse_reply_err(req, EPERM);
    return;
  }
  struct stat st;
  fill_attr(ino, &st);
  fuse_reply_attr(req, &st, 3600);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
  if (ino != FILE_INO) {
    fuse_reply_err(req, EISDIR);
    return;
  }
  if (fi->flags & O_TRUNC) {
    fuse_reply_err(req, EPERM);
    return;
  }
  /* No page cache of our own: the loop device above and the device below cache already. */
  fi->direct_io = 1;
  fuse_reply_open(req, fi);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
  if (ino != ROOT_INO) {
    fuse_reply_err(req, ENOTDIR);
    return;
  }
  char buf[512];
  size_t used = 0;
  struct stat st;
  const char *names[3] = {".", "..", FILE_NAME};
  fuse_ino_t inos[3] = {ROOT_INO, ROOT_INO, FILE_INO};
  for (int i = (int)off; i < 3; i++) {
    memset(&st, 0, sizeof st);
    st.st_ino = inos[i];
    st.st_mode = i < 2 ? S_IFDIR : S_IFREG;
    size_t entry = fuse_add_direntry(req, buf + used, sizeof buf - used, names[i], &st, i + 1);
    if (used + entry > size || used + entry > sizeof buf) break;
    used += entry;
  }
  fuse_reply_buf(req, buf, used);
}

/* One read buffer per FUSE thread, made on its first read and kept: reads allocate nothing after that. */
static char *thread_read_buffer(void) {
  char *buffer = pthread_getspecific(H.read_buffer_key);
  if (!buffer) {
    if (posix_memalign((void **)&buffer, 4096, READ_BUFFER_BYTES) != 0) return NULL;
    pthread_setspecific(H.read_buffer_key, buffer);
  }
  return buffer;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t offset, struct fuse_file_info *fi) {
  if ((uint64_t)offset >= H.size) {
    fuse_reply_buf(req, NULL, 0);
    return;
  }
  if ((uint64_t)offset + size > H.size) size = (size_t)(H.size - (uint64_t)offset);
  if (size > READ_BUFFER_BYTES) size = READ_BUFFER_BYTES;
  char *buffer = thread_read_buffer();
  if (!buffer) {
    fuse_reply_err(req, ENOMEM);
    return;
  }
  __atomic_fetch_add(&H.stat_reads, 1, __ATOMIC_RELAXED);
  size_t done = 0;
  while (done < size) {
    ssize_t n = pread(H.backing_fd, buffer + done, size - done, offset + (off_t)done);
    if (n < 0) {
      if (errno == EINTR) continue;
      fuse_reply_err(req, errno);
      return;
    }
    if (n == 0) break;
    done += (size_t)n;
  }
  __atomic_fetch_add(&H.stat_bytes_read, done, __ATOMIC_RELAXED);
  fuse_reply_buf(req, buffer, done);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t offset,
                     struct fuse_file_info *fi) {
  if ((uint64_t)offset >= H.size) {
    fuse_reply_err(req, ENOSPC);
    return;
  }
  if ((uint64_t)offset + size > H.size) size = (size_t)(H.size - (uint64_t)offset);
  __atomic_fetch_add(&H.stat_writes, 1, __ATOMIC_RELAXED);
  int err = lock_passable((uint64_t)offset, size);
  if (err) {
    fuse_reply_err(req, err);
    return;
  }
  /* Tracking first: a bit set for a write that then fails only costs a re-read, never a missed change. */
  mark_changed((uint64_t)offset, size);
  size_t done = 0;
  while (done < size) {
    ssize_t n = pwrite(H.backing_fd, buf + done, size - done, offset + (off_t)done);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      pthread_rwlock_unlock(&H.arm_lock);
      fuse_reply_err(req, e);
      return;
    }
    done += (size_t)n;
  }
  pthread_rwlock_unlock(&H.arm_lock);
  __atomic_fetch_add(&H.stat_bytes_written, done, __ATOMIC_RELAXED);
  fuse_reply_write(req, done);
}

static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) {
  fuse_reply_err(req, fdatasync(H.backing_fd) == 0 ? 0 : errno);
}

static void op_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { fuse_reply_err(req, 0); }
static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { fuse_reply_err(req, 0); }

static void op_statfs(fuse_req_t req, fuse_ino_t ino) {
  struct statvfs st;
  memset(&st, 0, sizeof st);
  st.f_bsize = 4096;
  st.f_namemax = 255;
  fuse_reply_statfs(req, &st);
}

static const struct fuse_lowlevel_ops tap_operations = {
  .init = op_init,
  .lookup = op_lookup,
  .getattr = op_getattr,
  .setattr = op_setattr,
  .open = op_open,
  .read = op_read,
  .write = op_write,
  .flush = op_flush,
  .release = op_release,
  .fsync = op_fsync,
  .readdir = op_readdir,
  .statfs = op_statfs,
};

static void *loop_main(void *arg) {
  struct fuse_loop_config *config = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(config, 32);
  /* Threads are kept once started: a new one costs a stack and a buffer, and bursts come back. */
  fuse_loop_cfg_set_idle_threads(config, 32);
  fuse_loop_cfg_set_clone_fd(config, 0);
  fuse_session_loop_mt(H.session, config);
  fuse_loop_cfg_destroy(config);
  char byte = 1;
  (void)!write(H.wake_pipe[1], &byte, 1);
  return NULL;
}

/* ---- freezer thread: FIFREEZE/FITHAW off the control thread (a thaw of an armed volume writes through us and
 * may wait for the engine, whose answer the control thread reads) ---- */

static int thaw_all_locked(void) {
  int first_error = 0;
  while (H.frozen_count > 0) {
    int fd = H.frozen_fds[--H.frozen_count];
    pthread_mutex_unlock(&H.freeze_lock);
    int rc = ioctl(fd, FITHAW, 0);
    int e = errno;
    close(fd);
    pthread_mutex_lock(&H.freeze_lock);
    if (rc != 0 && !first_error) first_error = e;
  }
  return first_error;
}

static void *freezer_main(void *arg) {
  pthread_mutex_lock(&H.freeze_lock);
  for (;;) {
    if (H.freeze_wanted) {
      H.freeze_wanted = 0;
      uint32_t seq = H.freeze_seq;
      uint64_t epoch = H.freeze_epoch;
      char path[4096];
      memcpy(path, H.freeze_path, sizeof path);
      pthread_mutex_unlock(&H.freeze_lock);
      int err = 0;
      int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      if (fd < 0) err = errno;
      else if (ioctl(fd, FIFREEZE, 0) != 0) {
        err = errno;
        close(fd);
      }
      pthread_mutex_lock(&H.freeze_lock);
      if (!err) {
        if (H.frozen_count < MAX_FROZEN) H.frozen_fds[H.frozen_count++] = fd;
        else {
          ioctl(fd, FITHAW, 0);
          close(fd);
          err = EMFILE;
        }
        /* The engine that asked left while the freeze was under way: undo it at once. */
        if (epoch != H.engine_epoch) H.thaw_now = 1;
      }
      pthread_mutex_unlock(&H.freeze_lock);
      send_reply(seq, err, NULL, 0);
      pthread_mutex_lock(&H.freeze_lock);
      continue;
    }
    if (H.thaw_wanted || H.thaw_now) {
      int asked = H.thaw_wanted;
      uint32_t seq = H.thaw_seq;
      H.thaw_wanted = 0;
      int forced = H.thaw_now;
      H.thaw_now = 0;
      if (forced && H.frozen_count) H.deadline_thawed = 1;
      int err = thaw_all_locked();
      if (asked) {
        if (!err && H.deadline_thawed) err = ETIME;
        H.deadline_thawed = 0;
        pthread_mutex_unlock(&H.freeze_lock);
        send_reply(seq, err, NULL, 0);
        pthread_mutex_lock(&H.freeze_lock);
      }
      continue;
    }
    if (H.frozen_count) {
      if (pthread_cond_timedwait(&H.freeze_cond, &H.freeze_lock, &H.freeze_deadline) == ETIMEDOUT &&
          H.frozen_count)
        H.thaw_now = 1;
    } else {
      pthread_cond_wait(&H.freeze_cond, &H.freeze_lock);
    }
  }
  return NULL;
}

/* ---- control: one engine connection at a time ---- */

/* The engine left (EOF, error, or a release): drop the snapshot, thaw, release every held writer. */
static void engine_gone(void) {
  pthread_rwlock_wrlock(&H.arm_lock);
  uint8_t *old = H.intercept_bits;
  H.intercept_bits = NULL;
  H.intercept_units = 0;
  /* The changes since the generation are still all in the bitmap, but a backup that armed and never finished
   * leaves no point for them to be relative to: be strict, the next backup reads everything. */
  if (old) H.tracking_lost = 1;
  pthread_rwlock_unlock(&H.arm_lock);
  free(old);

  pthread_mutex_lock(&H.freeze_lock);
  H.engine_epoch++;
  H.freeze_wanted = 0; /* a freeze asked but not started is dropped */
  if (H.frozen_count) H.thaw_now = 1;
  pthread_cond_signal(&H.freeze_cond);
  pthread_mutex_unlock(&H.freeze_lock);

  pthread_mutex_lock(&H.engine_lock);
  int fd = H.engine_fd;
  H.engine_fd = -1;
  for (held_write *r = H.held; r; r = r->next) {
    if (!r->done) {
      r->done = 1;
      r->err = 0;
      pthread_cond_signal(&r->cond);
    }
  }
  pthread_mutex_unlock(&H.engine_lock);
  if (fd >= 0) close(fd);
}

static int read_exact(int fd, void *data, size_t length) {
  char *bytes = data;
  while (length > 0) {
    ssize_t n = recv(fd, bytes, length, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    bytes += n;
    length -= (size_t)n;
  }
  return 0;
}

static void reply_info(uint32_t seq) {
  struct {
    uint64_t size;
    uint64_t track_unit;
    uint32_t flags;
    uint32_t pid;
    uint8_t generation[16];
  } info;
  memset(&info, 0, sizeof info);
  info.size = H.size;
  info.track_unit = H.track_unit;
  pthread_rwlock_rdlock(&H.arm_lock);
  if (H.intercept_bits) info.flags |= FLAG_ARMED;
  if (H.tracking_lost) info.flags |= FLAG_TRACKING_LOST;
  memcpy(info.generation, H.generation, 16);
  pthread_rwlock_unlock(&H.arm_lock);
  pthread_mutex_lock(&H.freeze_lock);
  if (H.frozen_count) info.flags |= FLAG_FROZEN;
  pthread_mutex_unlock(&H.freeze_lock);
  info.pid = (uint32_t)getpid();
  /* body: info, then "<mount dir>\n<source>" */
  char names[8192];
  int n = snprintf(names, sizeof names, "%s\n%s", H.mount_dir, H.source);
  int32_t head[2] = {0, 0};
  pthread_mutex_lock(&H.engine_lock);
  uint32_t header[3] = {MSG_REPLY, seq, (uint32_t)(sizeof head + sizeof info + (uint32_t)n)};
  send_all(H.engine_fd, header, sizeof header);
  send_all(H.engine_fd, head, sizeof head);
  send_all(H.engine_fd, &info, sizeof info);
  send_all(H.engine_fd, names, (size_t)n);
  pthread_mutex_unlock(&H.engine_lock);
}

static void reply_changed(uint32_t seq, int reset, const uint8_t *generation) {
  /* Control path: copying the bitmap may allocate (up to 2 MiB for 1 TiB at 64 KiB). */
  uint8_t *copy = malloc(H.changed_bytes ? H.changed_bytes : 1);
  if (!copy) {
    send_reply(seq, ENOMEM, NULL, 0);
    return;
  }
  if (reset) pthread_rwlock_wrlock(&H.arm_lock);
  for (uint64_t i = 0; i < H.changed_bytes; i++) copy[i] = __atomic_load_n(&H.changed_bits[i], __ATOMIC_ACQUIRE);
  if (reset) {
    memset(H.changed_bits, 0, H.changed_bytes);
    memcpy(H.generation, generation, 16);
    H.tracking_lost = 0;
    pthread_rwlock_unlock(&H.arm_lock);
  }
  send_reply(seq, 0, copy, (uint32_t)H.changed_bytes);
  free(copy);
}

/* Handles one frame; returns 1 when the helper is to stop. */
static int handle_frame(uint32_t type, uint32_t seq, const uint8_t *body, uint32_t length) {
  switch (type) {
    case MSG_HELLO:
      reply_info(seq);
      return 0;
    case MSG_ARM: {
      if (length < 24) break;
      uint32_t unit_size, reset;
      memcpy(&unit_size, body, 4);
      memcpy(&reset, body + 4, 4);
      /* unitSize 0: disarmed (a new generation may still start). */
      if (unit_size != 0 && (unit_size < 512 || (unit_size & (unit_size - 1)))) {
        send_reply(seq, EINVAL, NULL, 0);
        return 0;
      }
      unsigned shift = unit_size ? log2_exact(unit_size) : 0;
      uint64_t units = unit_size ? (H.size + unit_size - 1) >> shift : 0;
      uint8_t *bits = unit_size ? malloc((units + 7) / 8) : NULL;
      uint8_t *copy = reset ? malloc(H.changed_bytes ? H.changed_bytes : 1) : NULL;
      if ((unit_size && !bits) || (reset && !copy)) {
        free(bits);
        free(copy);
        send_reply(seq, ENOMEM, NULL, 0);
        return 0;
      }
      if (bits) memset(bits, 0xff, (units + 7) / 8);
      /* Arming, taking the changed bitmap and starting a generation happen at one instant for every write. */
      pthread_rwlock_wrlock(&H.arm_lock);
      uint8_t *old = H.intercept_bits;
      H.intercept_bits = bits;
      H.intercept_units = units;
      H.intercept_shift = shift;
      if (reset) {
        memcpy(copy, H.changed_bits, H.changed_bytes);
        memset(H.changed_bits, 0, H.changed_bytes);
        memcpy(H.generation, body + 8, 16);
        H.tracking_lost = 0;
      }
      pthread_rwlock_unlock(&H.arm_lock);
      free(old);
      send_reply(seq, 0, copy, reset ? (uint32_t)H.changed_bytes : 0);
      free(copy);
      return 0;
    }
    case MSG_DISARM: {
      pthread_rwlock_wrlock(&H.arm_lock);
      uint8_t *old = H.intercept_bits;
      H.intercept_bits = NULL;
      H.intercept_units = 0;
      pthread_rwlock_unlock(&H.arm_lock);
      free(old);
      send_reply(seq, 0, NULL, 0);
      return 0;
    }
    case MSG_SETTLE:
    case MSG_MARK: {
      if (length < 16) break;
      uint64_t first, count;
      memcpy(&first, body, 8);
      memcpy(&count, body + 8, 8);
      pthread_rwlock_rdlock(&H.arm_lock);
      set_intercept_bits(first, count, type == MSG_MARK);
      pthread_rwlock_unlock(&H.arm_lock);
      return 0;
    }
    case MSG_COMPLETE: {
      if (length < 12) break;
      uint64_t id;
      int32_t err;
      memcpy(&id, body, 8);
      memcpy(&err, body + 8, 4);
      pthread_mutex_lock(&H.engine_lock);
      complete_held(id, err);
      pthread_mutex_unlock(&H.engine_lock);
      return 0;
    }
    case MSG_CHANGED:
      reply_changed(seq, 0, NULL);
      return 0;
    case MSG_GENERATION:
      if (length < 16) break;
      pthread_rwlock_wrlock(&H.arm_lock);
      memcpy(H.generation, body, 16);
      pthread_rwlock_unlock(&H.arm_lock);
      send_reply(seq, 0, NULL, 0);
      return 0;
    case MSG_STATS: {
      uint64_t stats[5] = {
        __atomic_load_n(&H.stat_reads, __ATOMIC_RELAXED),
        __atomic_load_n(&H.stat_writes, __ATOMIC_RELAXED),
        __atomic_load_n(&H.stat_intercepted, __ATOMIC_RELAXED),
        __atomic_load_n(&H.stat_bytes_read, __ATOMIC_RELAXED),
        __atomic_load_n(&H.stat_bytes_written, __ATOMIC_RELAXED),
      };
      send_reply(seq, 0, stats, sizeof stats);
      return 0;
    }
    case MSG_FREEZE: {
      if (length < 5 || length - 4 >= sizeof H.freeze_path) break;
      uint32_t deadline_ms;
      memcpy(&deadline_ms, body, 4);
      pthread_mutex_lock(&H.freeze_lock);
      memcpy(H.freeze_path, body + 4, length - 4);
      H.freeze_path[length - 4] = 0;
      if (H.frozen_count == 0) {
        /* The deadline runs from the first freeze of a point. */
        clock_gettime(CLOCK_MONOTONIC, &H.freeze_deadline);
        H.freeze_deadline.tv_sec += deadline_ms / 1000;
        H.freeze_deadline.tv_nsec += (long)(deadline_ms % 1000) * 1000000L;
        if (H.freeze_deadline.tv_nsec >= 1000000000L) {
          H.freeze_deadline.tv_sec++;
          H.freeze_deadline.tv_nsec -= 1000000000L;
        }
        H.deadline_thawed = 0;
      }
      H.freeze_seq = seq;
      H.freeze_epoch = H.engine_epoch;
      H.freeze_wanted = 1;
      pthread_cond_signal(&H.freeze_cond);
      pthread_mutex_unlock(&H.freeze_lock);
      return 0;
    }
    case MSG_THAW:
      pthread_mutex_lock(&H.freeze_lock);
      H.thaw_seq = seq;
      H.thaw_wanted = 1;
      pthread_cond_signal(&H.freeze_cond);
      pthread_mutex_unlock(&H.freeze_lock);
      return 0;
    case MSG_RELEASE:
      send_reply(seq, 0, NULL, 0);
      engine_gone();
      return 0;
    case MSG_STOP:
      return 1;
  }
  send_reply(seq, EINVAL, NULL, 0);
  return 0;
}

/* Serves one engine connection until it ends; returns 1 when asked to stop (seq in *stop_seq). */
static int serve_engine(int fd, int listener, uint32_t *stop_seq) {
  uint8_t *body = NULL;
  size_t body_capacity = 0;
  int stop = 0;
  struct pollfd fds[3] = {{fd, POLLIN, 0}, {H.wake_pipe[0], POLLIN, 0}, {listener, POLLIN, 0}};
  for (;;) {
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) break; /* the FUSE session ended */
    if (!fds[0].revents) {
      /* Another engine while this one is connected: one master at a time, the newcomer is turned away. */
      int other = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
      if (other >= 0) close(other);
      continue;
    }
    uint32_t header[3];
    if (read_exact(fd, header, sizeof header) != 0) break;
    if (header[2] > (64u << 20)) break;
    if (header[2] > body_capacity) {
      uint8_t *grown = realloc(body, header[2]);
      if (!grown) break;
      body = grown;
      body_capacity = header[2];
    }
    if (header[2] && read_exact(fd, body, header[2]) != 0) break;
    if (handle_frame(header[0], header[1], body, header[2])) {
      *stop_seq = header[1];
      stop = 1;
      break;
    }
    if (H.engine_fd < 0) break; /* released */
  }
  free(body);
  return stop;
}

static int peer_is_root(int fd) {
  struct ucred cred;
  socklen_t len = sizeof cred;
  return getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.uid == 0;
}

static int fail(const char *what, int err) {
  printf("%s: %s\n", what, strerror(err));
  fflush(stdout);
  return 1;
}

int main(int argc, char **argv) {
  if (argc != 6) {
    fprintf(stderr, "usage: diskline-tap-helper SOCKET MOUNTDIR SIZE TRACKUNIT SOURCE (backing fd on 3)\n");
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  /* Only SIGKILL ends the helper: a volume in use is released with `diskline detach`, not a signal. */
  signal(SIGHUP, SIG_IGN);
  signal(SIGINT, SIG_IGN);
  signal(SIGTERM, SIG_IGN);
  H.socket_path = argv[1];
  H.mount_dir = argv[2];
  H.size = strtoull(argv[3], NULL, 10);
  H.track_unit = strtoull(argv[4], NULL, 10);
  H.source = argv[5];
  H.backing_fd = 3;
  H.engine_fd = -1;
  /* Nothing inherited beyond the backing fd: a pipe of whoever started us must not stay open for our lifetime. */
  close_range(4, ~0U, 0);
  if (H.size == 0 || H.track_unit < 512 || (H.track_unit & (H.track_unit - 1))) return fail("arguments", EINVAL);
  struct stat backing;
  if (fstat(H.backing_fd, &backing) != 0) return fail("backing fd 3", errno);
  fcntl(H.backing_fd, F_SETFD, FD_CLOEXEC);
  /* One server per source, whichever engine started it: the lock lives as long as this process. */
  if (flock(H.backing_fd, LOCK_EX | LOCK_NB) != 0) {
    printf("busy: %s is already served by another tap\n", H.source);
    fflush(stdout);
    return 3;
  }
  if (prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) != 0) fprintf(stderr, "PR_SET_IO_FLUSHER: %s\n", strerror(errno));
  /* Locked as pages are touched (MCL_ONFAULT): the FUSE threads' stacks are not populated whole. */
  if (mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) != 0) fprintf(stderr, "mlockall: %s\n", strerror(errno));

  H.track_shift = log2_exact(H.track_unit);
  uint64_t track_units = (H.size + H.track_unit - 1) >> H.track_shift;
  H.changed_bytes = (track_units + 7) / 8;
  H.changed_bits = calloc(H.changed_bytes ? H.changed_bytes : 1, 1);
  if (!H.changed_bits) return fail("changed bitmap", ENOMEM);
  pthread_rwlock_init(&H.arm_lock, NULL);
  pthread_mutex_init(&H.engine_lock, NULL);
  pthread_mutex_init(&H.freeze_lock, NULL);
  pthread_condattr_t cond_attr;
  pthread_condattr_init(&cond_attr);
  pthread_condattr_setclock(&cond_attr, CLOCK_MONOTONIC);
  pthread_cond_init(&H.freeze_cond, &cond_attr);
  pthread_key_create(&H.read_buffer_key, free);
  if (pipe2(H.wake_pipe, O_CLOEXEC) != 0) return fail("pipe", errno);

  int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_un address;
  memset(&address, 0, sizeof address);
  address.sun_family = AF_UNIX;
  if (strlen(H.socket_path) >= sizeof address.sun_path) return fail("socket path", ENAMETOOLONG);
  strcpy(address.sun_path, H.socket_path);
  unlink(H.socket_path); /* the flock above proves no live helper serves this source */
  mode_t old_mask = umask(0077);
  int bound = bind(listener, (struct sockaddr *)&address, sizeof address);
  umask(old_mask);
  if (bound != 0) return fail("bind", errno);
  if (listen(listener, 4) != 0) return fail("listen", errno);

  char *fuse_argv[] = {"diskline-tap-helper", "-o", "fsname=diskline-tap,subtype=diskline,allow_other", NULL};
  struct fuse_args args = FUSE_ARGS_INIT(3, fuse_argv);
  H.session = fuse_session_new(&args, &tap_operations, sizeof tap_operations, NULL);
  if (!H.session) return fail("fuse_session_new", EINVAL);
  if (fuse_session_mount(H.session, H.mount_dir) != 0) {
    unlink(H.socket_path);
    return fail("cannot mount FUSE (is /dev/fuse present, are we root, is the directory empty?)", EIO);
  }
  pthread_t freezer;
  if (pthread_create(&H.loop_thread, NULL, loop_main, NULL) != 0 ||
      pthread_create(&freezer, NULL, freezer_main, NULL) != 0) {
    fuse_session_unmount(H.session);
    unlink(H.socket_path);
    return fail("threads", EAGAIN);
  }
  printf("ready\n");
  fflush(stdout);
  int null_fd = open("/dev/null", O_RDWR);
  if (null_fd >= 0) {
    dup2(null_fd, 0);
    dup2(null_fd, 1);
    close(null_fd);
  }

  uint32_t stop_seq = 0;
  int stop = 0;
  struct pollfd fds[2] = {{listener, POLLIN, 0}, {H.wake_pipe[0], POLLIN, 0}};
  while (!stop) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (fds[1].revents) break; /* the FUSE session ended (unmounted from outside) */
    int fd = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (fd < 0) continue;
    if (!peer_is_root(fd)) {
      close(fd);
      continue;
    }
    pthread_mutex_lock(&H.engine_lock);
    H.engine_fd = fd;
    pthread_mutex_unlock(&H.engine_lock);
    stop = serve_engine(fd, listener, &stop_seq);
    if (!stop) engine_gone();
  }

  /* Stop: the engine has detached the loop device. Disarm, thaw, end the session, flush the backing fd. */
  pthread_rwlock_wrlock(&H.arm_lock);
  free(H.intercept_bits);
  H.intercept_bits = NULL;
  pthread_rwlock_unlock(&H.arm_lock);
  pthread_mutex_lock(&H.freeze_lock);
  thaw_all_locked();
  pthread_mutex_unlock(&H.freeze_lock);
  unlink(H.socket_path);
  fuse_session_exit(H.session);
  fuse_session_unmount(H.session);
  /* The lazy unmount ends the connection once nothing holds the file; if a loop device still does, exiting
   * closes /dev/fuse and the kernel aborts the connection instead. */
  struct timespec join_deadline;
  clock_gettime(CLOCK_REALTIME, &join_deadline);
  join_deadline.tv_sec += 5;
  pthread_timedjoin_np(H.loop_thread, NULL, &join_deadline);
  int err = fsync(H.backing_fd) == 0 ? 0 : errno;
  if (stop) send_reply(stop_seq, err, NULL, 0);
  return err ? 1 : 0;
}
