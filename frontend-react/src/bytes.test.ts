import { describe, expect, it } from 'vitest';
import { byteCount, hexPreview, isBinaryType, parseHex, toHex } from './bytes';

describe('bytes', () => {
  it('reads hex with or without spaces, in either case, and writes it back as pairs', () => {
    expect(parseHex('de ad BE EF\n00ff')).toEqual(Uint8Array.of(0xde, 0xad, 0xbe, 0xef, 0x00, 0xff));
    expect(parseHex('   ')).toEqual(new Uint8Array(0));
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    expect(parseHex(toHex(all))).toEqual(all);
    expect(toHex(Uint8Array.of(0, 1, 0xab))).toBe('00 01 ab');
  });

  it.each([
    ['de ad bx', /"x" is not a hex digit/],
    ['0xdead', /"x" is not a hex digit/],
    ['dea', /3 hex digits, and a byte is two/],
  ])('refuses %j in words', (text, why) => {
    expect(() => parseHex(text)).toThrow(why);
  });

  it('previews the first bytes, and says when there are more', () => {
    const bytes = Uint8Array.from({ length: 40 }, (_, i) => i);
    expect(hexPreview(bytes, 4)).toBe('00 01 02 03 …');
    expect(hexPreview(bytes.subarray(0, 4), 4)).toBe('00 01 02 03');
    expect(hexPreview(new Uint8Array(0), 4)).toBe('');
  });

  it('counts bytes in words', () => {
    expect([0, 1, 2, 3000].map(byteCount)).toEqual(['0 bytes', '1 byte', '2 bytes', '3,000 bytes']);
  });

  it('takes types ending in .bin for binary', () => {
    expect(['blob.bin', 'frame.bin', 'a.b.bin'].map(isBinaryType)).toEqual([true, true, true]);
    expect(['message', 'bin', 'binary', 'blob.bin.json', 'blobbin'].map(isBinaryType)).toEqual([false, false, false, false, false]);
  });
});
