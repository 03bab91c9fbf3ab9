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
//   there), tlogOtherKey? (log it, but under a key other than the signer's)}
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
const { rekorCanonicalEntry, trustedRootTlog } = require('./rekor.cjs');

const REKOR = 'https://rekor.sigstore.dev';

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
  if (o.tlogTrustedRoot) {
    tlogKeys = generateKeyPair('prime256v1');
    const tlog = await initializeTLog(REKOR, tlogKeys);
    mock(REKOR, rekorHandler(tlog, { strict: true }));
    witnesses.push(new RekorWitness({ rekorBaseURL: REKOR }));
    const start = new Date(Date.now() - 3600 * 1000).toISOString();
    fs.writeFileSync(o.tlogTrustedRoot, JSON.stringify({
      mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
      tlogs: [trustedRootTlog(REKOR, tlog.publicKey, start)],
      certificateAuthorities: [],
      ctlogs: [],
    }, null, 2));
  }
  const builder = new DSSEBundleBuilder({ signer, witnesses });
  const bundle = await builder.create({
    data: Buffer.from(JSON.stringify(statement)),
    type: 'application/vnd.in-toto+json',
  });
  const serialized = bundleToJSON(bundle);
  if (o.tlogTrustedRoot) {
    const logged = o.tlogOtherKey
      ? crypto.createPublicKey(crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey).export({ type: 'spki', format: 'pem' })
      : publicPem;
    rekorCanonicalEntry(serialized, tlogKeys.privateKey, logged);
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
