// Standard base64 (RFC 4648 §4: A-Z a-z 0-9 + /, padded with =), as `POST /broadcast` takes it in
// `data_base64` and delivers it as the event's data. Strict the way the gateway is: no whitespace,
// no URL-safe alphabet, padding required, unused bits zero. So text the gateway would refuse is
// refused here too, and a text event that merely looks like base64 ("hello") is not taken for bytes.
// (`atob` is lenient on all of these, and `Uint8Array.fromBase64` is not in every supported browser.)

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** Each character's 6-bit value; -1 for characters outside the alphabet. */
const VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) VALUE[ALPHABET.charCodeAt(i)] = i;

/** Data that is not standard base64: the message says where and why. */
export class Base64Error extends Error {
  override name = 'Base64Error';
}

/** Decodes standard base64; throws `Base64Error` for anything else. */
export function decodeBase64(text: string): Uint8Array {
  if (text.length % 4 !== 0) {
    throw new Base64Error(`not standard base64: ${text.length} characters, not a multiple of 4 (base64 is padded with =)`);
  }
  const padding = text.endsWith('==') ? 2 : text.endsWith('=') ? 1 : 0;
  const end = text.length - padding;
  const bytes = new Uint8Array((text.length / 4) * 3 - padding);
  let bits = 0;
  let held = 0;
  let out = 0;
  for (let i = 0; i < end; i++) {
    const code = text.charCodeAt(i);
    const value = code < 128 ? VALUE[code] : -1;
    if (value < 0) {
      throw new Base64Error(`not standard base64: ${JSON.stringify(text[i])} at character ${i + 1} (only A-Z a-z 0-9 + / and = at the end)`);
    }
    bits = ((bits << 6) | value) & 0xfff; // at most 12 bits are ever waiting
    held += 6;
    if (held >= 8) {
      held -= 8;
      bytes[out++] = (bits >> held) & 0xff;
    }
  }
  if ((bits & ((1 << held) - 1)) !== 0) {
    throw new Base64Error('not standard base64: the last character before the padding has bits set that encode nothing');
  }
  return bytes;
}

/** Encodes bytes as standard base64, padded: what `data_base64` takes. */
export function encodeBase64(bytes: Uint8Array): string {
  let text = '';
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
    text += ALPHABET[(n >> 18) & 63] + ALPHABET[(n >> 12) & 63];
    text += i + 1 < bytes.length ? ALPHABET[(n >> 6) & 63] : '=';
    text += i + 2 < bytes.length ? ALPHABET[n & 63] : '=';
  }
  return text;
}
