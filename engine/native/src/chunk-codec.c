/* The repository's chunk codec: keyed ids (HMAC-SHA256) for batches of chunks, and group blobs (chunks
 * compressed together with zstd, sealed with AES-256-GCM) in the layout of docs/repository-format.md. node:crypto builds a cipher and an HMAC object for every chunk
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
/* A group blob: header (flags, count, raw length, stored length), one member (id, raw length) per chunk, then
 * the stored bytes; header and members are authenticated with the sealed body. */
#define GROUP_HEADER_BYTES 16
#define MEMBER_BYTES 36
#define NONCE_BYTES 12
#define TAG_BYTES 16
#define SEAL_BYTES (NONCE_BYTES + TAG_BYTES)
#define FLAG_COMPRESSED 1

/* Why decodeGroup rejected a blob; the TypeScript side words the message. */
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

/* Seals body into out as nonce | ciphertext | tag, authenticating `aad_length` bytes of `aad`. */
static int seal_body(const unsigned char *aad, size_t aad_length, const unsigned char *body, size_t length,
                     unsigned char *out) {
  int written = 0, last = 0;
  if (RAND_bytes(out, NONCE_BYTES) != 1) return 0;
  return EVP_EncryptInit_ex(seal_context, NULL, NULL, NULL, out) &&
         EVP_EncryptUpdate(seal_context, NULL, &written, aad, (int)aad_length) &&
         EVP_EncryptUpdate(seal_context, out + NONCE_BYTES, &written, body, (int)length) &&
         EVP_EncryptFinal_ex(seal_context, out + NONCE_BYTES + written, &last) &&
         EVP_CIPHER_CTX_ctrl(seal_context, EVP_CTRL_GCM_GET_TAG, TAG_BYTES, out + NONCE_BYTES + length);
}

/* encodeGroup(dataKey | null, level, data, lengths, ids, members, out): the bytes of one group blob in out, or 0.
 * The group holds the chunks with members[i] set (lying back to back in data with the others, ids in ids),
 * compressed together as one zstd frame when that is smaller, sealed when a data key is given. */
static napi_value encode_group(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const unsigned char *key;
  int64_t level;
  unsigned char *data, *ids, *members, *out;
  uint32_t *lengths;
  size_t data_length, count, ids_length, member_flags, out_length;
  if (argc < 7 || !key_arg(env, argv[0], "dataKey", 1, &key) || !arg_int64(env, argv[1], "level", &level) ||
      !typed_arg(env, argv[2], "data", napi_uint8_array, (void **)&data, &data_length) ||
      !typed_arg(env, argv[3], "lengths", napi_uint32_array, (void **)&lengths, &count) ||
      !typed_arg(env, argv[4], "ids", napi_uint8_array, (void **)&ids, &ids_length) ||
      !typed_arg(env, argv[5], "members", napi_uint8_array, (void **)&members, &member_flags) ||
      !typed_arg(env, argv[6], "out", napi_uint8_array, (void **)&out, &out_length))
    return NULL;
  size_t total = 0, raw = 0, member_count = 0;
  for (size_t i = 0; i < count; i++) {
    total += lengths[i];
    if (i < member_flags && members[i]) {
      raw += lengths[i];
      member_count++;
    }
  }
  if (total > data_length || ids_length < count * ID_BYTES || member_flags < count || raw > UINT32_MAX) {
    napi_throw_range_error(env, NULL, "encodeGroup: the chunks overrun data, or ids or members is too short");
    return NULL;
  }
  napi_value result;
  if (member_count == 0) {
    napi_create_uint32(env, 0, &result);
    return result;
  }
  size_t head = GROUP_HEADER_BYTES + member_count * MEMBER_BYTES;
  if (head + SEAL_BYTES + raw > out_length) {
    napi_throw_range_error(env, NULL, "encodeGroup: out is too short for the group");
    return NULL;
  }
  size_t bound = ZSTD_compressBound(raw);
  if (!compress_context && !(compress_context = ZSTD_createCCtx())) {
    throw_errno(env, "encodeGroup", ENOMEM);
    return NULL;
  }
  /* Scratch holds the members gathered back to back (when others lie between them), then the frame. */
  if (!grow_scratch(raw + bound)) {
    throw_errno(env, "encodeGroup", ENOMEM);
    return NULL;
  }
  if (key && !keyed_cipher(&seal_context, seal_key, key, 1)) {
    throw_crypto(env, "encodeGroup");
    return NULL;
  }
  const unsigned char *plain = data;
  if (member_count != count) {
    size_t at = 0, gathered = 0;
    for (size_t i = 0; i < count; i++) {
      if (members[i]) {
        memcpy(scratch + gathered, data + at, lengths[i]);
        gathered += lengths[i];
      }
      at += lengths[i];
    }
    plain = scratch;
  }
  unsigned char *frame = scratch + raw;
  const unsigned char *body = plain;
  size_t body_length = raw;
  unsigned char flags = 0;
  size_t compressed = ZSTD_compressCCtx(compress_context, frame, bound, plain, raw, (int)level);
  if (!ZSTD_isError(compressed) && compressed < raw) {
    body = frame;
    body_length = compressed;
    flags = FLAG_COMPRESSED;
  }
  size_t stored = key ? NONCE_BYTES + body_length + TAG_BYTES : body_length;
  memset(out, 0, GROUP_HEADER_BYTES);
  out[0] = flags;
  put_u32le(out + 4, (uint32_t)member_count);
  put_u32le(out + 8, (uint32_t)raw);
  put_u32le(out + 12, (uint32_t)stored);
  unsigned char *member = out + GROUP_HEADER_BYTES;
  for (size_t i = 0; i < count; i++) {
    if (!members[i]) continue;
    memcpy(member, ids + i * ID_BYTES, ID_BYTES);
    put_u32le(member + ID_BYTES, lengths[i]);
    member += MEMBER_BYTES;
  }
  if (key) {
    if (!seal_body(out, head, body, body_length, out + head)) {
      throw_crypto(env, "encodeGroup");
      return NULL;
    }
  } else {
    memcpy(out + head, body, body_length);
  }
  napi_create_double(env, (double)(head + stored), &result);
  return result;
}

/* Opens a sealed body (nonce | ciphertext | tag) into out; 0 when it fails authentication. */
static int open_body(const unsigned char *aad, size_t aad_length, const unsigned char *stored, size_t length,
                     unsigned char *out) {
  size_t cipher_length = length - NONCE_BYTES - TAG_BYTES;
  int written = 0, last = 0;
  if (!EVP_DecryptInit_ex(open_context, NULL, NULL, NULL, stored) ||
      !EVP_DecryptUpdate(open_context, NULL, &written, aad, (int)aad_length) ||
      !EVP_DecryptUpdate(open_context, out, &written, stored + NONCE_BYTES, (int)cipher_length) ||
      !EVP_CIPHER_CTX_ctrl(open_context, EVP_CTRL_GCM_SET_TAG, TAG_BYTES,
                           (void *)(stored + NONCE_BYTES + cipher_length)))
    return 0;
  return EVP_DecryptFinal_ex(open_context, out + written, &last) > 0;
}

/* One group blob's plain bytes into out (its raw length); 0, the damage found, or -errno. The seal is checked
 * before any length inside it is trusted, so a flipped byte is reported as failed authentication. */
static int decode_one(const unsigned char *key, int check_ids, const unsigned char *blob, size_t blob_length,
                      unsigned char *out, size_t out_length) {
  if (blob_length < GROUP_HEADER_BYTES) return DAMAGE_TRUNCATED;
  int compressed = blob[0] & FLAG_COMPRESSED;
  uint32_t count = get_u32le(blob + 4), raw = get_u32le(blob + 8), stored_length = get_u32le(blob + 12);
  if (count == 0 || count > (blob_length - GROUP_HEADER_BYTES) / MEMBER_BYTES) return DAMAGE_TRUNCATED;
  size_t head = GROUP_HEADER_BYTES + (size_t)count * MEMBER_BYTES;
  if (head + stored_length != blob_length) return DAMAGE_TRUNCATED;
  const unsigned char *body = blob + head;
  size_t body_length = stored_length;
  if (raw > out_length) return DAMAGE_LENGTH;
  if (key) {
    if (stored_length < SEAL_BYTES) return DAMAGE_TRUNCATED;
    body_length = stored_length - SEAL_BYTES;
    /* A body that is the plain bytes themselves is decrypted straight to its place. */
    unsigned char *into = out;
    if (compressed || body_length != raw) {
      if (!grow_scratch(body_length + 1)) return -ENOMEM;
      into = scratch;
    }
    if (!open_body(blob, head, body, stored_length, into)) return DAMAGE_AUTHENTICATION;
    body = into;
  }
  size_t members_raw = 0;
  for (uint32_t i = 0; i < count; i++) members_raw += get_u32le(blob + GROUP_HEADER_BYTES + i * MEMBER_BYTES + ID_BYTES);
  if (members_raw != raw) return DAMAGE_LENGTH;
  if (compressed) {
    if (!decompress_context && !(decompress_context = ZSTD_createDCtx())) return -ENOMEM;
    size_t got = ZSTD_decompressDCtx(decompress_context, out, raw, body, body_length);
    if (ZSTD_isError(got)) return DAMAGE_DECOMPRESSION;
    if (got != raw) return DAMAGE_LENGTH;
  } else {
    if (body_length != raw) return DAMAGE_LENGTH;
    if (body != out) memcpy(out, body, body_length);
  }
  if (check_ids || !key) {
    size_t at = 0;
    for (uint32_t i = 0; i < count; i++) {
      const unsigned char *member = blob + GROUP_HEADER_BYTES + i * MEMBER_BYTES;
      uint32_t length = get_u32le(member + ID_BYTES);
      unsigned char id[ID_BYTES];
      if (!chunk_id(out + at, length, id)) return -EIO;
      if (memcmp(id, member, ID_BYTES) != 0) return DAMAGE_CONTENT;
      at += length;
    }
  }
  return 0;
}

/* decodeGroup(dataKey | null, idKey, checkIds, blob, out): the group's plain bytes (its members back to back)
 * into out. Returns 0 when sound, else the damage found. With checkIds (always when unencrypted, where it is
 * the only check of the content) every member's id is recomputed. */
static napi_value decode_group(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  const unsigned char *key, *id_key;
  bool check_ids = false;
  unsigned char *blob, *out;
  size_t blob_length, out_length;
  if (argc < 5 || !key_arg(env, argv[0], "dataKey", 1, &key) || !key_arg(env, argv[1], "idKey", 0, &id_key))
    return NULL;
  if (napi_get_value_bool(env, argv[2], &check_ids) != napi_ok) {
    napi_throw_type_error(env, NULL, "checkIds must be a boolean");
    return NULL;
  }
  if (!typed_arg(env, argv[3], "blob", napi_uint8_array, (void **)&blob, &blob_length) ||
      !typed_arg(env, argv[4], "out", napi_uint8_array, (void **)&out, &out_length))
    return NULL;
  if (!keyed_hmac(id_key) || (key && !keyed_cipher(&open_context, open_key, key, 0))) {
    throw_crypto(env, "decodeGroup");
    return NULL;
  }
  int damage = decode_one(key, check_ids, blob, blob_length, out, out_length);
  if (damage < 0) {
    throw_errno(env, "decodeGroup", -damage);
    return NULL;
  }
  napi_value result;
  napi_create_int32(env, damage, &result);
  return result;
}

void register_chunk_codec(napi_env env, napi_value exports) {
  EXPORT_FN(env, exports, "chunkIds", chunk_ids);
  EXPORT_FN(env, exports, "encodeGroup", encode_group);
  EXPORT_FN(env, exports, "decodeGroup", decode_group);
}
