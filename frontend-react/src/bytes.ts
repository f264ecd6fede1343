// Binary events in the UI: the event type convention that marks them, hex in (the publish form)
// and out (the feed's preview), and sizes in words. The gateway delivers `data_base64` as that
// same base64 text, so nothing on the wire says an event is binary: the type says so here.

/** Event types ending in this are shown as bytes (`blob.bin`, `frame.bin`). */
export const BINARY_TYPE_SUFFIX = '.bin';

/** The publish form's event type for bytes, and one the feed listens for by default. */
export const DEFAULT_BINARY_TYPE = `blob${BINARY_TYPE_SUFFIX}`;

/** Whether the app shows events of this type as bytes (their data decoded as base64). */
export function isBinaryType(type: string): boolean {
  return type.endsWith(BINARY_TYPE_SUFFIX);
}

/** Bytes written as hex, two digits a byte, whitespace between bytes optional: `de ad be ef`, `DEADBEEF`. */
export function parseHex(text: string): Uint8Array {
  const digits = text.replace(/\s+/g, '');
  const bad = digits.search(/[^0-9a-fA-F]/);
  if (bad >= 0) {
    throw new Error(`Bytes are not hex: ${JSON.stringify(digits[bad])} is not a hex digit (write bytes as 0-9 a-f, e.g. de ad be ef).`);
  }
  if (digits.length % 2 !== 0) {
    throw new Error(`Bytes are not whole: ${digits.length} hex digits, and a byte is two.`);
  }
  const bytes = new Uint8Array(digits.length / 2);
  for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return bytes;
}

/** Bytes as lowercase hex pairs separated by spaces, the form `parseHex` reads. */
export function toHex(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(' ');
}

/** The first `max` bytes as hex, with `…` when there are more. */
export function hexPreview(bytes: Uint8Array, max: number): string {
  const shown = toHex(bytes.subarray(0, max));
  return bytes.length > max ? `${shown} …` : shown;
}

/** `1 byte`, `3,000 bytes`. */
export function byteCount(n: number): string {
  return `${n.toLocaleString('en')} ${n === 1 ? 'byte' : 'bytes'}`;
}
