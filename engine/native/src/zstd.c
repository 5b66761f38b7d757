/* zstd for one repository chunk at a time, with a compression and a decompression context kept per thread:
 * node:zlib's one-shot calls build a fresh context (tables sized for large inputs) on every call, which costs
 * more than compressing a 64 KiB chunk itself. */
#include "addon.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <zstd.h>

static _Thread_local ZSTD_CCtx *compress_context;
static _Thread_local ZSTD_DCtx *decompress_context;
static _Thread_local void *scratch;
static _Thread_local size_t scratch_size;

static int buffer_arg(napi_env env, napi_value value, const char *name, void **data, size_t *length) {
  bool is_buffer = false;
  napi_is_buffer(env, value, &is_buffer);
  if (!is_buffer || napi_get_buffer_info(env, value, data, length) != napi_ok) {
    char message[96];
    snprintf(message, sizeof message, "%s must be a Buffer", name);
    napi_throw_type_error(env, NULL, message);
    return 0;
  }
  return 1;
}

static void throw_zstd(napi_env env, const char *what, size_t code) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s", what, ZSTD_getErrorName(code));
  napi_throw_error(env, "EZSTD", message);
}

/* zstdCompress(data: Buffer, level: number): Buffer — one zstd frame holding data. */
static napi_value zstd_compress(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *data;
  size_t length;
  int64_t level;
  if (argc < 2 || !buffer_arg(env, argv[0], "data", &data, &length) || !arg_int64(env, argv[1], "level", &level))
    return NULL;
  if (!compress_context && !(compress_context = ZSTD_createCCtx())) {
    throw_errno(env, "zstdCompress", ENOMEM);
    return NULL;
  }
  size_t bound = ZSTD_compressBound(length);
  if (scratch_size < bound) {
    void *grown = realloc(scratch, bound);
    if (!grown) {
      throw_errno(env, "zstdCompress", ENOMEM);
      return NULL;
    }
    scratch = grown;
    scratch_size = bound;
  }
  size_t written = ZSTD_compressCCtx(compress_context, scratch, bound, data, length, (int)level);
  if (ZSTD_isError(written)) {
    throw_zstd(env, "zstdCompress", written);
    return NULL;
  }
  napi_value result;
  napi_create_buffer_copy(env, written, scratch, NULL, &result);
  return result;
}

/* zstdDecompress(frame: Buffer, size: number): Buffer — the frame's content, which must be exactly size bytes. */
static napi_value zstd_decompress(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  void *frame;
  size_t length;
  int64_t size;
  if (argc < 2 || !buffer_arg(env, argv[0], "frame", &frame, &length) || !arg_int64(env, argv[1], "size", &size))
    return NULL;
  if (size < 0 || size > (1 << 30)) {
    napi_throw_range_error(env, NULL, "size must be between 0 and 1 GiB");
    return NULL;
  }
  if (!decompress_context && !(decompress_context = ZSTD_createDCtx())) {
    throw_errno(env, "zstdDecompress", ENOMEM);
    return NULL;
  }
  void *out;
  napi_value result;
  napi_create_buffer(env, (size_t)size, &out, &result);
  size_t got = ZSTD_decompressDCtx(decompress_context, out, (size_t)size, frame, length);
  if (ZSTD_isError(got)) {
    throw_zstd(env, "zstdDecompress", got);
    return NULL;
  }
  if (got != (size_t)size) {
    napi_throw_error(env, "EZSTD", "zstdDecompress: the frame holds fewer bytes than its chunk");
    return NULL;
  }
  return result;
}

void register_zstd(napi_env env, napi_value exports) {
  EXPORT_FN(env, exports, "zstdCompress", zstd_compress);
  EXPORT_FN(env, exports, "zstdDecompress", zstd_decompress);
}
