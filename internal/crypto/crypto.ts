// AES-GCM for values the database holds encrypted (masked variables, SSH keys), keyed by [crypto] block.
import { createCipheriv, createDecipheriv, randomBytes, type CipherGCMTypes } from "node:crypto";
import { EnvironmentError } from "../errors/errors.js";

const NONCE_BYTES = 12;
const TAG_BYTES = 16;

export class CryptoError extends EnvironmentError {
  override name = "CryptoError";
}

const ALGORITHM_BY_KEY_BYTES: Record<number, CipherGCMTypes> = { 16: "aes-128-gcm", 24: "aes-192-gcm", 32: "aes-256-gcm" };

export class Crypto {
  readonly #key: Buffer;
  readonly #algorithm: CipherGCMTypes;

  constructor(block: string) {
    const key = Buffer.from(block, "utf8");
    const algorithm = ALGORITHM_BY_KEY_BYTES[key.length];
    // The length alone is reported: the key itself must never reach an error message.
    if (!algorithm) throw new CryptoError(`crypto.block must be 16, 24 or 32 characters long, got ${key.length}`);
    this.#key = key;
    this.#algorithm = algorithm;
  }

  /** A fresh random nonce per call, so equal values never encrypt alike: nonce || ciphertext || tag. */
  encrypt(plain: Buffer | string): Buffer {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv(this.#algorithm, this.#key, nonce, { authTagLength: TAG_BYTES });
    const body = Buffer.concat([cipher.update(typeof plain === "string" ? Buffer.from(plain, "utf8") : plain), cipher.final()]);
    return Buffer.concat([nonce, body, cipher.getAuthTag()]);
  }

  decrypt(data: Buffer): Buffer {
    const fail = () => new CryptoError("cannot decrypt: wrong crypto.block or corrupted value");
    if (data.length < NONCE_BYTES + TAG_BYTES) throw fail();
    const nonce = data.subarray(0, NONCE_BYTES);
    const tag = data.subarray(data.length - TAG_BYTES);
    const body = data.subarray(NONCE_BYTES, data.length - TAG_BYTES);
    try {
      const decipher = createDecipheriv(this.#algorithm, this.#key, nonce, { authTagLength: TAG_BYTES });
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(body), decipher.final()]);
    } catch {
      throw fail();
    }
  }
}
