// Shared by the signers: the mock Rekor's entry in the form the real Rekor logs, and the
// tlog part of a trusted_root.json.
'use strict';
const crypto = require('node:crypto');
// RFC 8785 JSON canonicalization (@sigstore/mock's own dependency).
const canonicalize = require('canonicalize');

const b64 = (buf) => Buffer.from(buf).toString('base64');
const REKOR = 'https://rekor.sigstore.dev';
// SHA-256 of the parts, concatenated.
const sha = (...parts) => parts.reduce((h, p) => h.update(p), crypto.createHash('sha256')).digest();

// @sigstore/mock's Rekor logs the *proposed* entry (spec.proposedContent). The real
// Rekor's dsse v0.0.1 type logs its canonical form instead: the envelope's and payload's
// SHA-256 and the signature with its verifier (rekor pkg/types/dsse/v0.0.1). Rewrite the
// entry as the real Rekor would and sign its Signed Entry Timestamp with the mock log's
// key, over the canonical JSON of {body, integratedTime, logID, logIndex}, as Rekor does.
function rekorCanonicalEntry(serialized, logKey, verifierPem) {
  const entry = serialized.verificationMaterial.tlogEntries[0];
  const envelope = serialized.dsseEnvelope;
  const body = {
    apiVersion: '0.0.1',
    kind: 'dsse',
    spec: {
      envelopeHash: { algorithm: 'sha256', value: sha(JSON.stringify(envelope)).toString('hex') },
      payloadHash: { algorithm: 'sha256', value: sha(Buffer.from(envelope.payload, 'base64')).toString('hex') },
      signatures: [{ signature: envelope.signatures[0].sig, verifier: b64(verifierPem) }],
    },
  };
  entry.canonicalizedBody = b64(JSON.stringify(body));
  entry.kindVersion = { kind: 'dsse', version: '0.0.1' };
  const logID = Buffer.from(entry.logId.keyId, 'base64').toString('hex');
  // Keys in lexicographic order, no whitespace: RFC 8785 for these values.
  const signed = JSON.stringify({
    body: entry.canonicalizedBody,
    integratedTime: Number(entry.integratedTime),
    logID,
    logIndex: Number(entry.logIndex),
  });
  entry.inclusionPromise = { signedEntryTimestamp: b64(crypto.sign('sha256', Buffer.from(signed), logKey)) };
  entry.inclusionProof = inclusionProof(Buffer.from(entry.canonicalizedBody, 'base64'), logKey, entry.logId.keyId);
}

// A Rekor v2 (rekor-tiles) entry for a DSSE bundle: the log's dsse 0.0.2 body (the
// payload's SHA-256, the signature and its verifier, as DSSELogEntryV002 in protobuf
// JSON, canonicalized), an inclusion proof and no SET or integrated time. @sigstore/mock's
// logV2 logs the request itself with a proof for a one-entry tree at a random index,
// which no verifier accepts; this rewrites it as the real log writes it.
function rekorV2Entry(serialized, logKey, verifierDer, keyDetails) {
  const entry = serialized.verificationMaterial.tlogEntries[0];
  const envelope = serialized.dsseEnvelope;
  const body = {
    apiVersion: '0.0.2',
    kind: 'dsse',
    spec: {
      dsseV002: {
        payloadHash: {
          algorithm: 'SHA2_256',
          digest: b64(sha(Buffer.from(envelope.payload, 'base64'))),
        },
        signatures: [{
          content: envelope.signatures[0].sig,
          verifier: { keyDetails, publicKey: { rawBytes: b64(verifierDer) } },
        }],
      },
    },
  };
  entry.canonicalizedBody = b64(canonicalize(body));
  entry.kindVersion = { kind: 'dsse', version: '0.0.2' };
  delete entry.inclusionPromise;
  delete entry.integratedTime;
  entry.inclusionProof = inclusionProof(Buffer.from(entry.canonicalizedBody, 'base64'), logKey, entry.logId.keyId);
}

// RFC 6962 section 2.1: leaf and interior node hashes, the tree head, the audit path.
const leafHash = (data) => sha(Buffer.from([0]), data);
const split = (n) => { let k = 1; while (k * 2 < n) k *= 2; return k; };
function treeHead(leaves) {
  if (leaves.length === 1) return leaves[0];
  const k = split(leaves.length);
  return sha(Buffer.from([1]), treeHead(leaves.slice(0, k)), treeHead(leaves.slice(k)));
}
function auditPath(m, leaves) {
  if (leaves.length === 1) return [];
  const k = split(leaves.length);
  return m < k
    ? [...auditPath(m, leaves.slice(0, k)), treeHead(leaves.slice(k))]
    : [...auditPath(m - k, leaves.slice(k)), treeHead(leaves.slice(0, k))];
}

// The entry's body as a leaf among others in a log of a few entries, its audit path and
// a checkpoint (a signed note: origin, size, root hash; the log's signature line with
// the first four bytes of its log id) signed by the log's key.
function inclusionProof(body, logKey, logIdB64) {
  const size = 3 + crypto.randomInt(30);
  const index = crypto.randomInt(size);
  const leaves = Array.from({ length: size }, (_, i) => leafHash(i === index ? body : crypto.randomBytes(64)));
  const root = treeHead(leaves);
  const origin = new URL(REKOR).host;
  const note = `${origin}\n${size}\n${b64(root)}\n`;
  const signature = crypto.sign('sha256', Buffer.from(note), logKey);
  const hint = Buffer.from(logIdB64, 'base64').subarray(0, 4);
  return {
    logIndex: String(index),
    rootHash: b64(root),
    treeSize: String(size),
    hashes: auditPath(index, leaves).map(b64),
    checkpoint: { envelope: `${note}\n\u2014 ${origin} ${b64(Buffer.concat([hint, signature]))}\n` },
  };
}

function trustedRootTlog(baseUrl, publicKey, start) {
  return {
    baseUrl,
    hashAlgorithm: 'SHA2_256',
    publicKey: { rawBytes: b64(publicKey), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start } },
    logId: { keyId: b64(crypto.createHash('sha256').update(publicKey).digest()) },
  };
}

module.exports = { rekorCanonicalEntry, rekorV2Entry, trustedRootTlog, REKOR };
