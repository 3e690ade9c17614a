export declare const ENVELOPE_VERSION: number;
export declare const HEADER: number;
export declare const TAG: number;
export declare function aadFor(ns: string, key: string, version: number, keyId: number): Buffer;
export declare function sealInto(out: Buffer, at: number, dataKey: Uint8Array, keyId: number, ns: string, key: string, plaintext: Uint8Array, iv?: Uint8Array): number;
export declare function seal(dataKey: Uint8Array, keyId: number, ns: string, key: string, plaintext: Uint8Array, iv?: Uint8Array): Buffer;
