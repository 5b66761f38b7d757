/* The repository's chunk codec for whole batches of chunks: keyed ids (HMAC-SHA256), zstd and AES-256-GCM, in
 * the blob layout of docs/repository-format.md. node:crypto builds a cipher and an HMAC object for every chunk
 * and node:zlib a compression context, which cost more than the work on a 64 KiB chunk; here every context is
 * made once per thread and keyed again only when the key changes.
 *
 * OpenSSL is the copy inside Node (its symbols are resolved from the running node binary), so the engine uses
 * one OpenSSL, the same node:crypto uses for everything else. */
#include "addon.h"

#include <errno.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zstd.h>

#define ID_BYTES 32
#define KEY_BYTES 32
#define BLOB_HEADER_BYTES 48
/* The blob header's first 40 bytes (id, flags, 3 zero bytes, raw length) are authenticated with the chunk. */
#define AAD_BYTES 40
#define NONCE_BYTES 12
#define TAG_BYTES 16
#define FLAG_COMPRESSED 1

/* Why decodeChunks rejected a chunk; the TypeScript side words the message. */
enum damage {
  DAMAGE_OTHER_ID = 1,
  DAMAGE_TRUNCATED = 2,
  DAMAGE_AUTHENTICATION = 3,
  DAMAGE_DECOMPRESSION = 4,
  DAMAGE_LENGTH = 5,
  DAMAGE_CONTENT = 6,
};

static _Thread_local EVP_MAC *hmac;
static _Thread_local EVP_MAC_CTX *hmac_context;
static _Thread_local unsigned char hmac_key[KEY_BYTES];
static _Thread_local EVP_CIPHER_CTX *seal_context;
static _Thread_local unsigned char seal_key[KEY_BYTES];
static _Thread_local EVP_CIPHER_CTX *open_context;
static _Thread_local unsigned char open_key[KEY_BYTES];
static _Thread_local ZSTD_CCtx *compress_context;
static _Thread_local ZSTD_DCtx *decompress_context;
/* Compressed (encoding) or decrypted (decoding) bytes of one chunk on their way. */
static _Thread_local unsigned char *scratch;
static _Thread_local size_t scratch_size;

static void throw_crypto(napi_env env, const char *what) {
  char message[160];
  snprintf(message, sizeof message, "%s: OpenSSL failed", what);
  napi_throw_error(env, "ECRYPTO", message);
}

/* A typed array (Buffers are Uint8Arrays) of the expected element type; elements counted in `count`. */
static int typed_arg(napi_env env, napi_value value, const char *name, napi_typedarray_type expected, void **data,
                     size_t *count) {
  bool is_typed = false;
  napi_is_typedarray(env, value, &is_typed);
  napi_typedarray_type type;
  if (is_typed && napi_get_typedarray_info(env, value, &type, count, data, NULL, NULL) == napi_ok &&
      type == expected)
    return 1;
  char message[128];
  snprintf(message, sizeof message, "%s must be a %s", name,
           expected == napi_uint32_array  ? "Uint32Array"
           : expected == napi_int32_array ? "Int32Array"
                                          : "Buffer");
  napi_throw_type_error(env, NULL, message);
  return 0;
}

/* A 32-byte key, or (when `optional`) null/undefined for "no key": *key is then NULL. */
static int key_arg(napi_env env, napi_value value, const char *name, int optional, const unsigned char **key) {
  napi_valuetype type;
  napi_typeof(env, value, &type);
  if (optional && (type == napi_null || type == napi_undefined)) {
    *key = NULL;
    return 1;
  }
  void *data;
  size_t length;
  if (!typed_arg(env, value, name, napi_uint8_array, &data, &length)) return 0;
  if (length != KEY_BYTES) {
    char message[96];
    snprintf(message, sizeof message, "%s must be %d bytes", name, KEY_BYTES);
    napi_throw_range_error(env, NULL, message);
    return 0;
  }
  *key = data;
  return 1;
}

static int grow_scratch(size_t size) {
  if (scratch_size >= size) return 1;
  unsigned char *grown = realloc(scratch, size);
  if (!grown) return 0;
  scratch = grown;
  scratch_size = size;
  return 1;
}

static int keyed_hmac(const unsigned char *key) {
  if (!hmac_context) {
    if (!hmac && !(hmac = EVP_MAC_fetch(NULL, "HMAC", NULL))) return 0;
    if (!(hmac_context = EVP_MAC_CTX_new(hmac))) return 0;
  } else if (memcmp(hmac_key, key, KEY_BYTES) == 0) {
    return 1;
  }
  OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, "SHA256", 0),
                         OSSL_PARAM_construct_end()};
  if (!EVP_MAC_init(hmac_context, key, KEY_BYTES, params)) return 0;
  memcpy(hmac_key, key, KEY_BYTES);
  return 1;
}

/* HMAC-SHA256 under the key keyed_hmac set; a NULL key to EVP_MAC_init starts again with the same key. */
static int chunk_id(const unsigned char *data, size_t length, unsigned char *id) {
  size_t written = 0;
  return EVP_MAC_init(hmac_context, NULL, 0, NULL) && EVP_MAC_update(hmac_context, data, length) &&
         EVP_MAC_final(hmac_context, id, &written, ID_BYTES) && written == ID_BYTES;
}

static int keyed_cipher(EVP_CIPHER_CTX **context, unsigned char *current, const unsigned char *key, int encrypt) {
  if (*context && memcmp(current, key, KEY_BYTES) == 0) return 1;
  if (!*context && !(*context = EVP_CIPHER_CTX_new())) return 0;
  if (!EVP_CipherInit_ex(*context, EVP_aes_256_gcm(), NULL, key, NULL, encrypt)) return 0;
  memcpy(current, key, KEY_BYTES);
  return 1;
}

/* chunkIds(idKey, data, lengths, ids): the id of each chunk (lying back to back in data) into ids, 32 bytes each. */
static napi_value chunk_ids(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const unsigned char *key;
  unsigned char *data, *ids;
  uint32_t *lengths;
  size_t data_length, count, ids_length;
  if (argc < 4 || !key_arg(env, argv[0], "idKey", 0, &key) ||
      !typed_arg(env, argv[1], "data", napi_uint8_array, (void **)&data, &data_length) ||
      !typed_arg(env, argv[2], "lengths", napi_uint32_array, (void **)&lengths, &count) ||
      !typed_arg(env, argv[3], "ids", napi_uint8_array, (void **)&ids, &ids_length))
    return NULL;
  size_t total = 0;
  for (size_t i = 0; i < count; i++) total += lengths[i];
  if (total > data_length || ids_length < count * ID_BYTES) {
    napi_throw_range_error(env, NULL, "chunkIds: the chunks overrun data, or ids is too short");
    return NULL;
  }
  if (!keyed_hmac(key)) {
    throw_crypto(env, "chunkIds");
    return NULL;
  }
  size_t at = 0;
  for (size_t i = 0; i < count; i++) {
    if (!chunk_id(data + at, lengths[i], ids + i * ID_BYTES)) {
      throw_crypto(env, "chunkIds");
      return NULL;
    }
    at += lengths[i];
  }
  return NULL;
}

static void put_u32le(unsigned char *at, uint32_t value) {
  at[0] = value & 0xff;
  at[1] = (value >> 8) & 0xff;
  at[2] = (value >> 16) & 0xff;
  at[3] = value >> 24;
}

static uint32_t get_u32le(const unsigned char *at) {
  return (uint32_t)at[0] | (uint32_t)at[1] << 8 | (uint32_t)at[2] << 16 | (uint32_t)at[3] << 24;
}

/* Seals body into out as nonce | ciphertext | tag, authenticating the header's first AAD_BYTES. */
static int seal_body(const unsigned char *header, const unsigned char *body, size_t length, unsigned char *out) {
  int written = 0, last = 0;
  if (RAND_bytes(out, NONCE_BYTES) != 1) return 0;
  return EVP_EncryptInit_ex(seal_context, NULL, NULL, NULL, out) &&
         EVP_EncryptUpdate(seal_context, NULL, &written, header, AAD_BYTES) &&
         EVP_EncryptUpdate(seal_context, out + NONCE_BYTES, &written, body, (int)length) &&
         EVP_EncryptFinal_ex(seal_context, out + NONCE_BYTES + written, &last) &&
         EVP_CIPHER_CTX_ctrl(seal_context, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, out + NONCE_BYTES + length);
}

/* encodeChunks(dataKey | null, level, data, lengths, ids, encode, out, blobLengths, flags): total bytes in out.
 * For each chunk with encode[i] set, its blob (header, then the body: zstd when that is smaller, sealed when a
 * data key is given) goes into out, back to back; blobLengths[i] is its length, or -1 when not encoded. */
static napi_value encode_chunks(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const unsigned char *key;
  int64_t level;
  unsigned char *data, *ids, *encode, *out, *flags;
  uint32_t *lengths;
  int32_t *blob_lengths;
  size_t data_length, count, ids_length, encode_count, out_length, blob_count, flag_count;
  if (argc < 9 || !key_arg(env, argv[0], "dataKey", 1, &key) || !arg_int64(env, argv[1], "level", &level) ||
      !typed_arg(env, argv[2], "data", napi_uint8_array, (void **)&data, &data_length) ||
      !typed_arg(env, argv[3], "lengths", napi_uint32_array, (void **)&lengths, &count) ||
      !typed_arg(env, argv[4], "ids", napi_uint8_array, (void **)&ids, &ids_length) ||
      !typed_arg(env, argv[5], "encode", napi_uint8_array, (void **)&encode, &encode_count) ||
      !typed_arg(env, argv[6], "out", napi_uint8_array, (void **)&out, &out_length) ||
      !typed_arg(env, argv[7], "blobLengths", napi_int32_array, (void **)&blob_lengths, &blob_count) ||
      !typed_arg(env, argv[8], "flags", napi_uint8_array, (void **)&flags, &flag_count))
    return NULL;
  size_t total = 0, largest = 0;
  for (size_t i = 0; i < count; i++) {
    total += lengths[i];
    if (lengths[i] > largest) largest = lengths[i];
  }
  if (total > data_length || ids_length < count * ID_BYTES || encode_count < count || blob_count < count ||
      flag_count < count) {
    napi_throw_range_error(env, NULL, "encodeChunks: the chunks overrun data, or an output array is too short");
    return NULL;
  }
  if (!compress_context && !(compress_context = ZSTD_createCCtx())) {
    throw_errno(env, "encodeChunks", ENOMEM);
    return NULL;
  }
  if (!grow_scratch(ZSTD_compressBound(largest))) {
    throw_errno(env, "encodeChunks", ENOMEM);
    return NULL;
  }
  if (key && !keyed_cipher(&seal_context, seal_key, key, 1)) {
    throw_crypto(env, "encodeChunks");
    return NULL;
  }
  size_t at = 0, placed = 0;
  for (size_t i = 0; i < count; i++) {
    const unsigned char *chunk = data + at;
    size_t length = lengths[i];
    at += length;
    if (!encode[i]) {
      blob_lengths[i] = -1;
      flags[i] = 0;
      continue;
    }
    const unsigned char *body = chunk;
    size_t body_length = length;
    unsigned char flag = 0;
    size_t compressed = ZSTD_compressCCtx(compress_context, scratch, scratch_size, chunk, length, (int)level);
    if (!ZSTD_isError(compressed) && compressed < length) {
      body = scratch;
      body_length = compressed;
      flag = FLAG_COMPRESSED;
    }
    size_t stored = key ? NONCE_BYTES + body_length + TAG_BYTES : body_length;
    if (placed + BLOB_HEADER_BYTES + stored > out_length) {
      napi_throw_range_error(env, NULL, "encodeChunks: out is too short for the blobs");
      return NULL;
    }
    unsigned char *header = out + placed;
    memcpy(header, ids + i * ID_BYTES, ID_BYTES);
    memset(header + ID_BYTES, 0, BLOB_HEADER_BYTES - ID_BYTES);
    header[32] = flag;
    put_u32le(header + 36, (uint32_t)length);
    put_u32le(header + 40, (uint32_t)stored);
    if (key) {
      if (!seal_body(header, body, body_length, header + BLOB_HEADER_BYTES)) {
        throw_crypto(env, "encodeChunks");
        return NULL;
      }
    } else {
      memcpy(header + BLOB_HEADER_BYTES, body, body_length);
    }
    blob_lengths[i] = (int32_t)(BLOB_HEADER_BYTES + stored);
    flags[i] = flag;
    placed += BLOB_HEADER_BYTES + stored;
  }
  napi_value result;
  napi_create_double(env, (double)placed, &result);
  return result;
}

/* Opens a sealed body (nonce | ciphertext | tag) into out; 0 when it fails authentication. */
static int open_body(const unsigned char *header, const unsigned char *stored, size_t length, unsigned char *out) {
  size_t cipher_length = length - NONCE_BYTES - TAG_BYTES;
  int written = 0, last = 0;
  if (!EVP_DecryptInit_ex(open_context, NULL, NULL, NULL, stored) ||
      !EVP_DecryptUpdate(open_context, NULL, &written, header, AAD_BYTES) ||
      !EVP_DecryptUpdate(open_context, out, &written, stored + NONCE_BYTES, (int)cipher_length) ||
      !EVP_CIPHER_CTX_ctrl(open_context, EVP_CTRL_GCM_SET_TAG, TAG_BYTES,
                           (void *)(stored + NONCE_BYTES + cipher_length)))
    return 0;
  return EVP_DecryptFinal_ex(open_context, out + written, &last) > 0;
}

/* One chunk's blob into out (exactly unit_length bytes); 0, the damage found, or -errno. Checks run in the order
 * that names the first thing wrong: a flipped length byte is an authentication failure, not a length mismatch. */
static int decode_one(const unsigned char *key, int check_id, const unsigned char *header, size_t stored_length,
                      const unsigned char *expected_id, unsigned char *out, size_t unit_length) {
  if (memcmp(header, expected_id, ID_BYTES) != 0) return DAMAGE_OTHER_ID;
  int compressed = header[32] & FLAG_COMPRESSED;
  uint32_t raw_length = get_u32le(header + 36);
  const unsigned char *body = header + BLOB_HEADER_BYTES;
  size_t body_length = stored_length;
  if (key) {
    if (stored_length < NONCE_BYTES + TAG_BYTES) return DAMAGE_TRUNCATED;
    body_length = stored_length - NONCE_BYTES - TAG_BYTES;
    /* A body that is the chunk itself is decrypted straight to its place. */
    unsigned char *into = out;
    if (compressed || body_length != unit_length) {
      if (!grow_scratch(body_length + 1)) return -ENOMEM;
      into = scratch;
    }
    if (!open_body(header, body, stored_length, into)) return DAMAGE_AUTHENTICATION;
    body = into;
  }
  if (raw_length != unit_length) return DAMAGE_LENGTH;
  if (compressed) {
    size_t got = ZSTD_decompressDCtx(decompress_context, out, unit_length, body, body_length);
    if (ZSTD_isError(got)) return DAMAGE_DECOMPRESSION;
    if (got != unit_length) return DAMAGE_LENGTH;
  } else {
    if (body_length != unit_length) return DAMAGE_LENGTH;
    if (body != out) memcpy(out, body, body_length);
  }
  if (check_id || !key) {
    unsigned char id[ID_BYTES];
    if (!chunk_id(out, unit_length, id)) return -EIO;
    if (memcmp(id, expected_id, ID_BYTES) != 0) return DAMAGE_CONTENT;
  }
  return 0;
}

/* decodeChunks(dataKey | null, idKey, checkIds, input, headerOffsets, storedLengths, unitLengths, ids, out):
 * each chunk's blob (its header at headerOffsets[i] in input) decoded into out, back to back, unitLengths[i]
 * bytes each. Returns -1 when all are sound, else index * 8 + the damage of the first damaged chunk. */
static napi_value decode_chunks(napi_env env, napi_callback_info info) {
  size_t argc = 9;
  napi_value argv[9];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const unsigned char *key, *id_key;
  bool check_ids = false;
  unsigned char *input, *ids, *out;
  uint32_t *header_offsets, *stored_lengths, *unit_lengths;
  size_t input_length, count, stored_count, unit_count, ids_length, out_length;
  if (argc < 9 || !key_arg(env, argv[0], "dataKey", 1, &key) || !key_arg(env, argv[1], "idKey", 0, &id_key))
    return NULL;
  if (napi_get_value_bool(env, argv[2], &check_ids) != napi_ok) {
    napi_throw_type_error(env, NULL, "checkIds must be a boolean");
    return NULL;
  }
  if (!typed_arg(env, argv[3], "input", napi_uint8_array, (void **)&input, &input_length) ||
      !typed_arg(env, argv[4], "headerOffsets", napi_uint32_array, (void **)&header_offsets, &count) ||
      !typed_arg(env, argv[5], "storedLengths", napi_uint32_array, (void **)&stored_lengths, &stored_count) ||
      !typed_arg(env, argv[6], "unitLengths", napi_uint32_array, (void **)&unit_lengths, &unit_count) ||
      !typed_arg(env, argv[7], "ids", napi_uint8_array, (void **)&ids, &ids_length) ||
      !typed_arg(env, argv[8], "out", napi_uint8_array, (void **)&out, &out_length))
    return NULL;
  size_t total = 0;
  for (size_t i = 0; i < count && i < unit_count; i++) total += unit_lengths[i];
  if (stored_count < count || unit_count < count || ids_length < count * ID_BYTES || total > out_length) {
    napi_throw_range_error(env, NULL, "decodeChunks: an array is too short, or out cannot hold the chunks");
    return NULL;
  }
  for (size_t i = 0; i < count; i++) {
    if ((uint64_t)header_offsets[i] + BLOB_HEADER_BYTES + stored_lengths[i] > input_length) {
      napi_throw_range_error(env, NULL, "decodeChunks: a blob overruns input");
      return NULL;
    }
  }
  if (!decompress_context && !(decompress_context = ZSTD_createDCtx())) {
    throw_errno(env, "decodeChunks", ENOMEM);
    return NULL;
  }
  if (!keyed_hmac(id_key) || (key && !keyed_cipher(&open_context, open_key, key, 0))) {
    throw_crypto(env, "decodeChunks");
    return NULL;
  }
  double verdict = -1;
  size_t at = 0;
  for (size_t i = 0; i < count; i++) {
    int damage = decode_one(key, check_ids, input + header_offsets[i], stored_lengths[i], ids + i * ID_BYTES,
                            out + at, unit_lengths[i]);
    if (damage < 0) {
      throw_errno(env, "decodeChunks", -damage);
      return NULL;
    }
    if (damage > 0) {
      verdict = (double)i * 8 + damage;
      break;
    }
    at += unit_lengths[i];
  }
  napi_value result;
  napi_create_double(env, verdict, &result);
  return result;
}

void register_chunk_codec(napi_env env, napi_value exports) {
  EXPORT_FN(env, exports, "chunkIds", chunk_ids);
  EXPORT_FN(env, exports, "encodeChunks", encode_chunks);
  EXPORT_FN(env, exports, "decodeChunks", decode_chunks);
}
