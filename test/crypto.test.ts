import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { Crypto, CryptoError } from "../internal/crypto/crypto.js";

const KEYS = { 16: "0123456789abcdef", 24: "0123456789abcdef01234567", 32: "0123456789abcdef0123456789abcdef" };

describe("crypto", () => {
  for (const [size, key] of Object.entries(KEYS)) {
    it(`round-trips with a ${size}-byte key (AES-${Number(size) * 8}-GCM)`, () => {
      const c = new Crypto(key);
      const secret = "s3cr3t value\nwith lines and ünïcode";
      const sealed = c.encrypt(secret);
      assert.equal(sealed.length, 12 + Buffer.byteLength(secret) + 16, "nonce || ciphertext || tag");
      assert.ok(!sealed.includes(Buffer.from(secret)), "plaintext must not be visible in the sealed value");
      assert.equal(c.decrypt(sealed).toString("utf8"), secret);
      const bytes = Buffer.from([0, 1, 2, 255, 254]);
      assert.deepEqual(c.decrypt(c.encrypt(bytes)), bytes);
    });
  }

  it("keys of different sizes produce different ciphers (one cannot open the other's values)", () => {
    const sealed = new Crypto(KEYS[32]).encrypt("x");
    assert.throws(() => new Crypto(KEYS[16]).decrypt(sealed), CryptoError);
  });

  it("fails with CryptoError under the wrong key", () => {
    const sealed = new Crypto("0123456789abcdef").encrypt("hello");
    assert.throws(() => new Crypto("fedcba9876543210").decrypt(sealed), (err: unknown) => {
      assert.ok(err instanceof CryptoError);
      assert.equal((err as Error).message, "cannot decrypt: wrong crypto.block or corrupted value");
      return true;
    });
  });

  it("fails with CryptoError when any part of the value was tampered with", () => {
    const c = new Crypto(KEYS[32]);
    const sealed = c.encrypt("payload to protect");
    for (const index of [0, 12, sealed.length - 17, sealed.length - 1]) {
      const tampered = Buffer.from(sealed);
      tampered[index] ^= 0x01;
      assert.throws(() => c.decrypt(tampered), CryptoError, `byte ${index} flipped`);
    }
    assert.throws(() => c.decrypt(sealed.subarray(0, sealed.length - 1)), CryptoError, "truncated");
  });

  it("fails with CryptoError on input too short to hold a nonce and tag", () => {
    const c = new Crypto(KEYS[16]);
    assert.throws(() => c.decrypt(Buffer.alloc(0)), CryptoError);
    assert.throws(() => c.decrypt(Buffer.alloc(27)), CryptoError);
  });

  it("two encryptions of the same value differ", () => {
    const c = new Crypto(KEYS[24]);
    const a = c.encrypt("same");
    const b = c.encrypt("same");
    assert.notDeepEqual(a, b);
    assert.notDeepEqual(a.subarray(0, 12), b.subarray(0, 12), "nonces must differ");
    assert.equal(c.decrypt(a).toString(), "same");
    assert.equal(c.decrypt(b).toString(), "same");
  });

  it("round-trips an empty value", () => {
    const c = new Crypto(KEYS[16]);
    const sealed = c.encrypt("");
    assert.equal(sealed.length, 28);
    assert.equal(c.decrypt(sealed).length, 0);
    assert.equal(c.decrypt(c.encrypt(Buffer.alloc(0))).length, 0);
  });

  it("rejects a key of the wrong length without echoing it", () => {
    assert.throws(() => new Crypto("short-key-value"), (err: unknown) => {
      assert.ok(err instanceof CryptoError);
      assert.match((err as Error).message, /16, 24 or 32 characters long, got 15/);
      assert.ok(!(err as Error).message.includes("short-key-value"));
      return true;
    });
  });
});
