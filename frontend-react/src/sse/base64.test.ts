import { describe, expect, it } from 'vitest';
import { Base64Error, decodeBase64, encodeBase64 } from './base64';

/** Node's own codec: an independent implementation to compare with. */
const nodeBase64 = (bytes: Uint8Array) => Buffer.from(bytes).toString('base64');

describe('base64', () => {
  it('round-trips all 256 byte values, as Node encodes them', () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const text = encodeBase64(all);
    expect(text).toBe(nodeBase64(all));
    expect(decodeBase64(text)).toEqual(all);
    // Each byte value alone, so every value is also seen in each of the three positions' padding.
    for (let i = 0; i < 256; i++) {
      for (const bytes of [[i], [0, i], [i, 0xff, i]]) {
        const one = Uint8Array.from(bytes);
        expect(decodeBase64(nodeBase64(one))).toEqual(one);
      }
    }
  });

  it('decodes the RFC 4648 test vectors, every padding length included', () => {
    const vectors: [string, string][] = [
      ['', ''],
      ['f', 'Zg=='],
      ['fo', 'Zm8='],
      ['foo', 'Zm9v'],
      ['foob', 'Zm9vYg=='],
      ['fooba', 'Zm9vYmE='],
      ['foobar', 'Zm9vYmFy'],
    ];
    for (const [plain, text] of vectors) {
      expect(new TextDecoder().decode(decodeBase64(text))).toBe(plain);
      expect(encodeBase64(new TextEncoder().encode(plain))).toBe(text);
    }
  });

  it.each([
    ['hello', /5 characters, not a multiple of 4/],
    ['AAEC//4', /not a multiple of 4/], // unpadded
    ['not base64!', /not a multiple of 4/],
    ['AAEC__4=', /"_" at character 5/], // the URL-safe alphabet
    ['AAE C//4=', /not a multiple of 4/],
    ['AAEC /4=', /" " at character 5/], // whitespace
    ['AA=A', /"=" at character 3/], // padding only at the end
    ['=AAA', /"=" at character 1/],
    ['A===', /"=" at character 2/],
    ['ÀAAA', /"À" at character 1/],
    ['AB==', /bits set that encode nothing/], // 0x00 is AA==; B leaves a 1 bit over
    ['AAB=', /bits set that encode nothing/],
  ])('refuses %j with a Base64Error that says why', (text, why) => {
    expect(() => decodeBase64(text)).toThrow(Base64Error);
    expect(() => decodeBase64(text)).toThrow(why);
  });
});
