// What the operator console needs of a signed transaction without asking the node: its virtual size.

/**
 * The virtual size (vB) of a raw transaction given as hex (BIP 141: weight / 4, rounded up; weight = non-witness
 * bytes × 4 + witness bytes, the segwit marker and flag counting as witness). Throws on bytes that are not exactly
 * one transaction.
 */
export function vsizeOf(hex: string): number {
  const b = Buffer.from(hex, "hex");
  if (b.length * 2 !== hex.length) throw new Error("not a transaction: the hex is not whole bytes");
  let i = 4; // the version
  const need = (n: number) => {
    if (i + n > b.length) throw new Error("not a transaction: it ends early");
  };
  const varint = (): number => {
    need(1);
    const x = b[i++]!;
    if (x < 0xfd) return x;
    const width = x === 0xfd ? 2 : x === 0xfe ? 4 : 8;
    need(width);
    const v = width === 2 ? b.readUInt16LE(i) : width === 4 ? b.readUInt32LE(i) : Number(b.readBigUInt64LE(i));
    i += width;
    return v;
  };
  const skip = (n: number) => {
    need(n);
    i += n;
  };
  need(2);
  const segwit = b[4] === 0 && b[5] === 1;
  if (segwit) i += 2;
  const inputs = varint();
  for (let k = 0; k < inputs; k++) {
    skip(36); // the outpoint
    skip(varint()); // scriptSig
    skip(4); // sequence
  }
  const outputs = varint();
  for (let k = 0; k < outputs; k++) {
    skip(8); // the amount
    skip(varint()); // scriptPubKey
  }
  let witness = 0;
  if (segwit) {
    const from = i;
    for (let k = 0; k < inputs; k++) for (let items = varint(), j = 0; j < items; j++) skip(varint());
    witness = i - from + 2;
  }
  skip(4); // the lock time
  if (i !== b.length) throw new Error("not a transaction: bytes left after it");
  return Math.ceil(((b.length - witness) * 4 + witness) / 4);
}
