// Shared by the signers: the mock Rekor's entry in the form the real Rekor logs, and the
// tlog part of a trusted_root.json.
'use strict';
const crypto = require('node:crypto');

const b64 = (buf) => Buffer.from(buf).toString('base64');

// @sigstore/mock's Rekor logs the *proposed* entry (spec.proposedContent). The real
// Rekor's dsse v0.0.1 type logs its canonical form instead: the envelope's and payload's
// SHA-256 and the signature with its verifier (rekor pkg/types/dsse/v0.0.1). Rewrite the
// entry as the real Rekor would and sign its Signed Entry Timestamp with the mock log's
// key, over the canonical JSON of {body, integratedTime, logID, logIndex}, as Rekor does.
function rekorCanonicalEntry(serialized, logKey, verifierPem) {
  const sha256 = (data) => crypto.createHash('sha256').update(data).digest('hex');
  const entry = serialized.verificationMaterial.tlogEntries[0];
  const envelope = serialized.dsseEnvelope;
  const body = {
    apiVersion: '0.0.1',
    kind: 'dsse',
    spec: {
      envelopeHash: { algorithm: 'sha256', value: sha256(JSON.stringify(envelope)) },
      payloadHash: { algorithm: 'sha256', value: sha256(Buffer.from(envelope.payload, 'base64')) },
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
}


function trustedRootTlog(baseUrl, publicKey, start) {
  return {
    baseUrl,
    hashAlgorithm: 'SHA2_256',
    publicKey: { rawBytes: b64(publicKey), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start } },
    logId: { keyId: b64(crypto.createHash('sha256').update(publicKey).digest()) },
  };
}

module.exports = { rekorCanonicalEntry, trustedRootTlog };
