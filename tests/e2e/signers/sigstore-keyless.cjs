// The keyless half of the independent signer: sigstore-js signs with a Fulcio
// certificate and logs to Rekor, both mocked in-process by @sigstore/mock (its own CA,
// CT log and transparency log), builds the v0.3 bundle of a cosign/sign/v1 Statement and
// attaches it with @sigstore/oci. It also writes the mock's trusted_root.json, the trust
// material a verifier of these bundles needs.
//
//   node sigstore-keyless.cjs '<json options>'
//
// options: {registry, repository, digest, username, password, issuer, subject,
//   trustedRoot (path to write), subjectDigest?, noTlog? (no Rekor entry),
//   forgeIntegratedTime? (change the logged time after the SET was made)}
'use strict';
const crypto = require('node:crypto');
const fs = require('node:fs');
const { initializeCA, initializeCTLog, initializeTLog, fulcioHandler, rekorHandler } = require('@sigstore/mock');
const { mock } = require('@sigstore/mock/dist/mock');
const { generateKeyPair } = require('@sigstore/mock/dist/util/key');
const { DSSEBundleBuilder, FulcioSigner, RekorWitness } = require('@sigstore/sign');
const { bundleToJSON } = require('@sigstore/bundle');
const { attachArtifactToImage } = require('@sigstore/oci');
const { rekorCanonicalEntry, trustedRootTlog } = require('./rekor.cjs');

const FULCIO = 'https://fulcio.sigstore.dev';
const REKOR = 'https://rekor.sigstore.dev';
const b64 = (buf) => Buffer.from(buf).toString('base64');
const b64url = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

async function main() {
  const o = JSON.parse(process.argv[2]);
  const caKeys = generateKeyPair('prime256v1');
  const ctlog = await initializeCTLog(caKeys);
  const ca = await initializeCA(caKeys, ctlog);
  mock(FULCIO, fulcioHandler(ca, { strict: true }));
  const tlogKeys = generateKeyPair('prime256v1');
  const tlog = await initializeTLog(REKOR, tlogKeys);
  mock(REKOR, rekorHandler(tlog, { strict: true }));

  // An OIDC token as a CI provider would give it (the mock reads its claims).
  const now = Math.floor(Date.now() / 1000);
  const token = `${b64url({ alg: 'none', typ: 'JWT' })}.${b64url({ iss: o.issuer, sub: o.subject, aud: 'sigstore', iat: now, exp: now + 600 })}.`;
  const signer = new FulcioSigner({ fulcioBaseURL: FULCIO, identityProvider: { getToken: async () => token } });
  const witness = new RekorWitness({ rekorBaseURL: REKOR });
  const subjectDigest = o.subjectDigest || o.digest;
  const statement = {
    _type: 'https://in-toto.io/Statement/v1',
    subject: [{ name: `${o.registry}/${o.repository}`, digest: { sha256: subjectDigest.replace(/^sha256:/, '') } }],
    predicateType: 'https://sigstore.dev/cosign/sign/v1',
    predicate: {},
  };
  const witnesses = o.noTlog ? [] : [witness];
  const bundle = await new DSSEBundleBuilder({ signer, witnesses }).create({
    data: Buffer.from(JSON.stringify(statement)),
    type: 'application/vnd.in-toto+json',
  });
  const serialized = bundleToJSON(bundle);
  if (!o.noTlog) {
    const cert = new crypto.X509Certificate(Buffer.from(serialized.verificationMaterial.certificate.rawBytes, 'base64'));
    rekorCanonicalEntry(serialized, tlogKeys.privateKey, cert.toString());
  }
  // A forged log time (the SET no longer covers it): what the SET check is for.
  if (o.forgeIntegratedTime) {
    const entry = serialized.verificationMaterial.tlogEntries[0];
    entry.integratedTime = String(Number(entry.integratedTime) - 60);
  }
  const json = JSON.stringify(serialized);

  const start = new Date(Date.now() - 3600 * 1000).toISOString();
  const trustedRoot = {
    mediaType: 'application/vnd.dev.sigstore.trustedroot+json;version=0.1',
    tlogs: [trustedRootTlog(REKOR, tlog.publicKey, start)],
    certificateAuthorities: [{
      subject: { organization: 'sigstore.mock', commonName: 'sigstore' },
      uri: FULCIO,
      certChain: { certificates: [{ rawBytes: b64(ca.rootCertificate) }] },
      validFor: { start },
    }],
    ctlogs: [{
      baseUrl: 'https://ctfe.sigstore.dev',
      hashAlgorithm: 'SHA2_256',
      publicKey: { rawBytes: b64(ctlog.publicKey), keyDetails: 'PKIX_ECDSA_P256_SHA_256', validFor: { start } },
      logId: { keyId: b64(ctlog.logID) },
    }],
    timestampAuthorities: [],
  };
  fs.writeFileSync(o.trustedRoot, JSON.stringify(trustedRoot, null, 2));

  await attachArtifactToImage({
    imageName: `${o.registry}/${o.repository}`,
    imageDigest: o.digest,
    artifact: Buffer.from(json),
    mediaType: 'application/vnd.dev.sigstore.bundle.v0.3+json',
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
