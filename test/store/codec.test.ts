// The store's value codec: JSON with bigint tagged. Every value a wallet, journal or projection holds comes back
// exactly (property test), and hostile keys cannot reach an object's prototype.
import t from "tap";
import fc from "fast-check";
import { decode, encode } from "../../src/store/codec.ts";

const runs = Number(process.env.FUZZ_RUNS ?? 300);

const { tree } = fc.letrec((tie) => ({
  tree: fc.oneof({ depthSize: "small" }, tie("leaf"), tie("list"), tie("record")),
  leaf: fc.oneof(
    fc.string(), fc.integer(), fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => (Object.is(d, -0) ? 0 : d)), fc.boolean(), fc.constant(null),
    fc.bigInt({ min: -(2n ** 70n), max: 2n ** 70n }),
  ),
  list: fc.array(tie("tree"), { maxLength: 6 }),
  // "$n" alone would be the bigint tag itself; any other key, including awkward ones, must round-trip.
  record: fc.dictionary(fc.oneof(fc.string({ maxLength: 8 }), fc.constantFrom("n", "$", "$$n", "constructor", "toString")).filter((k) => k !== "$n" && k !== "__proto__"), tie("tree"), { maxKeys: 6 }),
}));

t.test("decode(encode(x)) is x for nested values with bigints", async (t) => {
  fc.assert(fc.property(tree, (x) => {
    t.same(decode(encode(x)), x);
    return true;
  }), { numRuns: runs * 3 });
  t.same(decode(encode({ a: 1n, b: [2n, { c: -3n }], d: { $n: "4", other: true } })), { a: 1n, b: [2n, { c: -3n }], d: { $n: "4", other: true } }, "a tag with company is a plain object");
});

t.test("a __proto__ key stays a plain property", async (t) => {
  const v = decode<Record<string, unknown>>(Buffer.from('{"__proto__":{"$n":"5"},"x":{"__proto__":{"polluted":true}}}'));
  t.equal(Object.getPrototypeOf(v), Object.prototype, "the prototype is untouched");
  t.equal(Object.getOwnPropertyDescriptor(v, "__proto__")?.value, 5n, "the tagged bigint is the property's value");
  t.equal(({} as Record<string, unknown>).polluted, undefined, "nothing reached Object.prototype");
  t.throws(() => encode({ n: Number.NaN }), /cannot store the number NaN/);
});
