// An independent signer for the end-to-end tests: sigstore-js builds a Sigstore bundle
// (v0.3, DSSE envelope of an in-toto Statement, the way `cosign sign` v3 does) with a
// key signer, and @sigstore/oci attaches it to the image as an OCI 1.1 referrer (writing
// the referrers tag schema index on registries without the referrers API).
//
//   node sigstore-bundle.cjs '<json options>'
//
// options: {registry, repository, digest, keyPem (PKCS#8 private key), username,
//   password, subjectDigest? (sign another digest), predicateType?, predicate?,
//   tlogTrustedRoot? (log the signature in a mock Rekor, write its trusted_root.json
//   there), tlogOtherKey? (log it, but under a key other than the signer's),
//   tlogForm? ('v1': SET and inclusion proof, the default; 'v1-proof': inclusion proof
//   only; 'v2': a Rekor v2 entry, proof only; 'v2-broken': one with a wrong audit path)}
// A logged bundle is checked with sigstore-js's own verifier (@sigstore/verify) before
// it is attached: it must accept it, or reject it when it is meant to be broken.
// Prints the bundle JSON on stdout.
'use strict';
const crypto = require('node:crypto');
const { DSSEBundleBuilder } = require('@sigstore/sign');
const { bundleToJSON } = require('@sigstore/bundle');
const { attachArtifactToImage } = require('@sigstore/oci');
const fs = require('node:fs');
const { initializeTLog, rekorHandler } = require('@sigstore/mock');
const { mock } = require('@sigstore/mock/dist/mock');
const { generateKeyPair } = require('@sigstore/mock/dist/util/key');
const { RekorWitness } = require('@sigstore/sign');
const { rekorV2Handler } = require('@sigstore/mock/dist/rekor/handler');
const { Verifier, toSignedEntity, toTrustMaterial } = require('@sigstore/verify');
const { bundleFromJSON } = require('@sigstore/bundle');
const { TrustedRoot } = require('@sigstore/protobuf-specs');
const { rekorCanonicalEntry, rekorV2Entry, trustedRootTlog, REKOR } = require('./rekor.cjs');

const BUNDLE_MEDIA_TYPE = 'application/vnd.dev.sigstore.bundle.v0.3+json';
const COSIGN_SIGN = 'https://sigstore.dev/cosign/sign/v1';

async function main() {
  const o = JSON.parse(process.argv[2]);
  const key = crypto.createPrivateKey(o.keyPem);
  const publicPem = crypto.createPublicKey(key).export({ type: 'spki', format: 'pem' });
  const signer = {
    sign: async (data) => ({
      // ECDSA signatures DER-encoded, as Sigstore bundles carry them.
      signature: crypto.sign(key.asymmetricKeyType === 'ed25519' ? null : 'sha256', data, key),
      key: { $case: 'publicKey', publicKey: publicPem, hint: 'guardrail-test' },
    }),
  };
  const subjectDigest = o.subjectDigest || o.digest;
  const statement = {
    _type: 'https://in-toto.io/Statement/v1',
    subject: [{ name: `${o.registry}/${o.repository}`, digest: { sha256: subjectDigest.replace(/^sha256:/, '') } }],
    predicateType: o.predicateType || COSIGN_SIGN,
    predicate: o.predicate || {},
  };
  const witnesses = [];
  let tlogKeys;
  let trustedRoot;
  const form = o.tlogForm || 'v1';
  const v2 = form.startsWith('v2');
  if (o.tlogTrustedRoot) {
    tlogKeys = generateKeyPair('prime256v1');
    const tlog = await initializeTLog(REKOR, tlogKeys);
    mock(REKOR, v2 ? rekorV2Handler(tlog, { strict: true }) : rekorHandler(tlog, { strict: true }));
    witnesses.push(new RekorWitness({ rekorBaseURL: REKOR, majorApiVersion: v2 ? 2 : 1 }));
    const start = new Date(Date.now() - 3600 * 1000).toISOString();
    trustedRoot = {
      mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
      tlogs: [trustedRootTlog(REKOR, tlog.publicKey, start)],
      certificateAuthorities: [],
      ctlogs: [],
    };
    fs.writeFileSync(o.tlogTrustedRoot, JSON.stringify(trustedRoot, null, 2));
  }
  const builder = new DSSEBundleBuilder({ signer, witnesses });
  const bundle = await builder.create({
    data: Buffer.from(JSON.stringify(statement)),
    type: 'application/vnd.in-toto+json',
  });
  const serialized = bundleToJSON(bundle);
  if (o.tlogTrustedRoot) {
    const loggedKey = o.tlogOtherKey
      ? crypto.createPublicKey(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey)
      : crypto.createPublicKey(publicPem);
    if (v2) {
      const details = loggedKey.asymmetricKeyType === 'ed25519' ? 'PKIX_ED25519' : 'PKIX_ECDSA_P256_SHA_256';
      rekorV2Entry(serialized, tlogKeys.privateKey, loggedKey.export({ type: 'spki', format: 'der' }), details);
    } else {
      rekorCanonicalEntry(serialized, tlogKeys.privateKey, loggedKey.export({ type: 'spki', format: 'pem' }));
    }
    const entry = serialized.verificationMaterial.tlogEntries[0];
    if (form === 'v1-proof') delete entry.inclusionPromise;
    const broken = form === 'v2-broken';
    if (broken) {
      const proof = entry.inclusionProof;
      // A wrong sibling hash, or a wrong index when the tree has no siblings.
      if (proof.hashes.length > 0) proof.hashes[0] = Buffer.alloc(32, 7).toString('base64');
      else proof.logIndex = '1';
    }
    // The oracle: sigstore-js's verifier on this bundle, with the signer's key and the log.
    const trust = toTrustMaterial(TrustedRoot.fromJSON(trustedRoot), () => ({
      publicKey: crypto.createPublicKey(publicPem),
      validFor: () => true,
    }));
    let verdict = 'accepted';
    try {
      new Verifier(trust, { tlogThreshold: 1, ctlogThreshold: 0, timestampThreshold: 0 })
        .verify(toSignedEntity(bundleFromJSON(serialized)));
    } catch (e) {
      verdict = `rejected: ${e.message}`;
    }
    // (sigstore-js does not compare a dsse entry's verifier with the signer: an entry
    // naming another key is refused here, and by Guardrail, not by it.)
    const expected = broken ? 'rejected' : 'accepted';
    if (!o.tlogOtherKey && !verdict.startsWith(expected)) {
      throw new Error(`@sigstore/verify ${verdict}, expected it to be ${expected}`);
    }
  }
  const json = JSON.stringify(serialized);
  await attachArtifactToImage({
    imageName: `${o.registry}/${o.repository}`,
    imageDigest: o.digest,
    artifact: Buffer.from(json),
    mediaType: BUNDLE_MEDIA_TYPE,
    annotations: {
      'dev.sigstore.bundle.content': 'dsse-envelope',
      'dev.sigstore.bundle.predicateType': statement.predicateType,
    },
    credentials: { username: o.username, password: o.password },
  });
  process.stdout.write(json + '\n');
}

main().catch((err) => {
  console.error(err && err.cause ? `${err.message}: ${err.cause}` : err);
  process.exit(1);
});
