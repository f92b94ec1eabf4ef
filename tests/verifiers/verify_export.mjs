// A second, independent verifier of a Jaga evidence export, written from the format (README,
// "Checking an export"), with Node's standard library alone: the format is the contract, not
// our Python or our verify.sh. Usage: node verify_export.mjs <folder> <ca-fingerprint> [<witness>...]
// Exit 0: every check passed; 1: a check failed; 2: usage.
import { createHash, createPublicKey, verify, X509Certificate } from "node:crypto";
import { lstatSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";

const [folder, pinArg, ...witnesses] = process.argv.slice(2);
if (!folder || !pinArg) {
  console.error("usage: node verify_export.mjs <folder> <ca-fingerprint> [<witness>...]");
  process.exit(2);
}
const normalise = (text) =>
  text.replace(/^sha256 fingerprint=/i, "").replace(/[: ]/g, "").toLowerCase();
const pin = normalise(pinArg);
if (!/^[0-9a-f]{64}$/.test(pin)) {
  console.error("a CA fingerprint is 64 hexadecimal digits");
  process.exit(2);
}
const witnessPins = [...new Set(witnesses.map(normalise))];
if (witnessPins.some((w) => !/^[0-9a-f]{64}$/.test(w))) {
  console.error("a witness fingerprint is 64 hexadecimal digits");
  process.exit(2);
}

const problems = [];
const fail = (text) => problems.push(text);
const sha256 = (bytes) => createHash("sha256").update(bytes).digest("hex");
const GENESIS = "0".repeat(64);

function isPlain(name) {
  try {
    return lstatSync(join(folder, name)).isFile();
  } catch {
    return false;
  }
}
function exists(name) {
  try {
    lstatSync(join(folder, name));
    return true;
  } catch {
    return false;
  }
}
function isFolder(name) {
  try {
    return lstatSync(join(folder, name)).isDirectory();
  } catch {
    return false;
  }
}
const read = (name) => readFileSync(join(folder, name));
const list = (name) =>
  isFolder(name) ? readdirSync(join(folder, name)).filter((n) => !n.startsWith(".")).sort() : [];

function finish(counts) {
  for (const p of problems) console.log(`FAILED: ${p}`);
  if (problems.length === 0) {
    console.log(
      `OK: ${counts.events} events, ${counts.pictures} pictures, ${counts.cosignatures} cosignatures`,
    );
    process.exit(0);
  }
  console.log(`FAILED: ${problems.length} problems`);
  process.exit(1);
}

// Exactly one certificate in standard PEM form, nothing else in the file.
function certificate(name) {
  if (!isPlain(name)) return null;
  const text = read(name).toString("latin1");
  let cert;
  try {
    cert = new X509Certificate(text);
  } catch {
    return null;
  }
  const strip = (s) => s.replace(/\n+$/, "");
  return strip(cert.toString()) === strip(text) ? cert : null;
}

const counts = { events: 0, pictures: 0, cosignatures: 0 };
for (const part of ["certs", "events", "pictures"]) {
  if (!isFolder(part)) fail(`${part}/: missing or not a plain folder`);
}
if (!isPlain("manifest.json")) fail("manifest.json: missing or not a plain file");

// 1. The CA: the one whose fingerprint the auditor brought.
const ca = certificate("certs/ca.pem");
if (!ca) {
  fail("certs/ca.pem: not one PEM certificate");
  finish(counts);
}
if (sha256(ca.raw) !== pin) {
  fail(`certs/ca.pem has fingerprint ${sha256(ca.raw)}, not the pinned CA`);
  finish(counts);
}

// 2. The unit's certificates: issued by that CA for a client, naming one site and one unit.
// certs/unit.pem, and certs/unit-<serial>.pem when the unit renewed its key within the stretch:
// each names the same unit; each event must be signed by one valid at its time.
function unitCertificate(name) {
  const cert = certificate(name);
  if (!cert) {
    fail(`${name}: not one PEM certificate`);
    return null;
  }
  const names = cert.subject.split("\n");
  const ous = names.filter((n) => n.includes("OU="));
  const cns = names.filter((n) => n.includes("CN="));
  const site = ous.length === 1 ? (/^OU=([a-z0-9-]+)$/.exec(ous[0]) || [])[1] : undefined;
  const device = cns.length === 1 ? (/^CN=([a-z0-9-]+)$/.exec(cns[0]) || [])[1] : undefined;
  if (!site || !device) {
    fail(`${name} does not name one site (OU) and one unit (CN)`);
    return null;
  }
  const key = cert.publicKey;
  const isEd = key.asymmetricKeyType === "ed25519";
  const isP256 =
    key.asymmetricKeyType === "ec" && key.asymmetricKeyDetails.namedCurve === "prime256v1";
  if (!isEd && !isP256) {
    fail(`${name}: the key is neither ECDSA P-256 nor Ed25519`);
    return null;
  }
  return { name, cert, site, device, key, isEd, vouched: 0 };
}
const main = unitCertificate("certs/unit.pem");
if (!main) finish(counts);
const { site, device } = main;
const signers = [main];
let unsound = false;
// Newest first, by serial, as the exporter chose them: the first that vouches is credited.
const serial = (n) => BigInt(n.slice(5, -4));
const more = list("certs").filter((n) => /^unit-[0-9]{1,49}\.pem$/.test(n));
more.sort((a, b) => (serial(a) < serial(b) ? 1 : serial(a) > serial(b) ? -1 : 0));
for (const n of more) {
  const other = unitCertificate(`certs/${n}`);
  if (!other) {
    unsound = true;
  } else if (other.site !== site || other.device !== device) {
    fail(`certs/${n}: a certificate of ${other.site}/${other.device}, not of this export's unit`);
    unsound = true;
  } else {
    signers.push(other);
  }
}
// The issuing CA's certificates between them, when the export carries any (it renews: same
// key, new certificate): believed only as the pinned CA's.
const links = [];
const linkNames = (exists("certs/issuing.pem") ? ["issuing.pem"] : []).concat(
  list("certs").filter((n) => /^issuing-[0-9]{1,49}\.pem$/.test(n)),
);
for (const n of linkNames) {
  const link = certificate(`certs/${n}`);
  if (!link) {
    fail(`certs/${n}: not one PEM certificate`);
    unsound = true;
  } else {
    links.push(link);
  }
}
if (unsound) finish(counts);
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";
const issuedVia = (unit, link) => {
  const signer = link || ca;
  return (
    ca.ca &&
    ca.verify(ca.publicKey) &&
    (!link || (link.ca && link.checkIssued(ca) && link.verify(ca.publicKey))) &&
    !unit.ca &&
    unit.checkIssued(signer) &&
    unit.verify(signer.publicKey) &&
    (unit.keyUsage === undefined || unit.keyUsage.includes(CLIENT_AUTH))
  );
};
const within = (cert, secs) =>
  Date.parse(cert.validFrom) / 1000 <= secs && secs <= Date.parse(cert.validTo) / 1000;
const validAt = (unit, secs) =>
  [null, ...links].some(
    (link) =>
      issuedVia(unit, link) && within(ca, secs) && (!link || within(link, secs)) && within(unit, secs),
  );
// 3. The events: the exact signed bytes, in one fixed form; fields are read as text.
const ID = "[a-z0-9]([a-z0-9-]{0,46}[a-z0-9])?";
const TOKEN = "[A-Za-z0-9_.:-]{1,64}";
const NAT = "(0|[1-9][0-9]{0,18})";
const HEX = "[0-9a-f]{64}";
const SENSOR = `"${ID}":"[a-z-]{1,32}"`;
const CHECKPOINT =
  `"checkpoint":\\{"interval_s":${NAT},"sensors":\\{(${SENSOR}(,${SENSOR})*)?\\},` +
  `"uptime_s":${NAT}\\},`;
const BODY = new RegExp(
  `^\\{"boot_id":"${TOKEN}",("cause":"${TOKEN}",)?(${CHECKPOINT})?"clock_synced":(true|false),` +
    `"device":"${ID}","id":"${TOKEN}","kind":"(camera|checkpoint|door|motion|patrol|system|tamper)",` +
    `"mono_ns":${NAT},"prev":"${HEX}","sensor":"${ID}","seq":${NAT},"site":"${ID}",` +
    `("snapshot_sha256":\\[("${HEX}"(,"${HEX}")*)?\\],)?"state":"[a-z-]{1,32}",` +
    `"ts":${NAT},"v":1\\}$`,
);
// A checkpoint's sensors may be named like a field ("seq", "site"); the body's own fields
// come after the checkpoint (keys are sorted), so the last occurrence is the body's.
const field = (text, name) =>
  [...text.matchAll(new RegExp(`"${name}":"?([^",}]*)"?[,}]`, "g"))].pop()[1];
const picturesOf = (text) => {
  const m = /"snapshot_sha256":\[([^\]]*)\]/.exec(text);
  return m && m[1] ? m[1].replace(/"/g, "").split(",") : [];
};

const named = new Set();
const bodies = new Map();
let last = null;
let firstSeq = null;
for (const name of list("events")) {
  const where = `events/${name}`;
  if (!/^[0-9]{20}\.(body|sig)$/.test(name)) {
    fail(`${where}: not a file an export holds`);
    continue;
  }
  if (name.endsWith(".sig")) {
    const body = where.replace(/\.sig$/, ".body");
    try {
      lstatSync(join(folder, body));
    } catch {
      fail(`${where}: no body beside it`);
    }
    continue;
  }
  const sigWhere = where.replace(/\.body$/, ".sig");
  const before = problems.length;
  if (!isPlain(where)) {
    fail(`${where}: not a plain file`);
    continue;
  }
  if (!isPlain(sigWhere)) {
    fail(`${sigWhere}: missing or not a plain file`);
    continue;
  }
  const body = read(where);
  if (!body.every((b) => b >= 0x20 && b <= 0x7e)) {
    fail(`${where}: not printable ASCII`);
    continue;
  }
  const text = body.toString("ascii");
  if (!BODY.test(text)) {
    fail(`${where}: not in the form of a signed event`);
    continue;
  }
  const seq = BigInt(field(text, "seq"));
  const ts = BigInt(field(text, "ts"));
  const prev = field(text, "prev");
  if (seq !== BigInt(name.slice(0, 20))) fail(`${where}: holds seq ${seq}, not its name's`);
  if (field(text, "site") !== site || field(text, "device") !== device) {
    fail(`${where}: an event of another unit than the certificate's`);
  }
  // Signed with the key of one of the unit's certificates, valid and chaining at its time.
  const secs = Number(ts / 1000000000n);
  const sig = read(sigWhere);
  const signs = (s) => {
    try {
      return s.isEd
        ? verify(null, body, s.key, sig)
        : verify("sha256", body, { key: s.key, dsaEncoding: "der" }, sig);
    } catch {
      return false;
    }
  };
  let chosen = null;
  let unchained = null;
  for (const s of signers) {
    if (!signs(s)) continue;
    if (validAt(s.cert, secs)) {
      chosen = s;
      break;
    }
    unchained = unchained || s;
  }
  if (chosen) {
    chosen.vouched += 1;
  } else if (unchained) {
    fail(`${where}: ${unchained.name} does not chain to the CA at the event's time`);
  } else {
    fail(`${sigWhere}: the signature does not verify`);
  }
  if (last) {
    if (seq !== last.seq + 1n) fail(`${where}: seq ${seq} right after seq ${last.seq}`);
    if (prev !== last.hash) fail(`${where}: does not link to ${last.where}`);
  } else if (seq === 1n && prev !== GENESIS) {
    fail(`${where}: the first event, but prev is not ${GENESIS}`);
  }
  last = { seq, hash: sha256(body), where };
  if (firstSeq === null) firstSeq = seq;
  if (problems.length === before) for (const h of picturesOf(text)) named.add(h);
  bodies.set(seq, text);
  counts.events += 1;
}
if (counts.events === 0) fail("events/: no signed events");
else
  for (const s of signers.filter((x) => x.vouched === 0)) {
    fail(`${s.name}: vouches for no event here`);
  }

// 4. The subject: the events this export is about, and the pictures they sign.
const wanted = [];
let maxSubject = null;
if (!isPlain("subject")) {
  fail("subject: missing or not a plain file");
} else {
  const raw = read("subject");
  if (raw.length === 0 || !raw.every((b) => (b >= 0x30 && b <= 0x39) || b === 0x0a)) {
    fail("subject: not seq numbers, one a line");
  } else {
    for (const line of raw.toString("ascii").split("\n")) {
      if (line === "") continue;
      if (!/^[1-9][0-9]{0,18}$/.test(line)) {
        fail(`subject: ${line} is not a seq number`);
        continue;
      }
      if (maxSubject === null || BigInt(line) > maxSubject) maxSubject = BigInt(line);
      const text = bodies.get(BigInt(line));
      const file = `events/${line.padStart(20, "0")}.body`;
      if (text === undefined && !isPlain(file)) {
        fail(`subject: seq ${line} is not among the events`);
        continue;
      }
      if (text !== undefined) wanted.push(...picturesOf(text));
    }
  }
}

// 5. The pictures: each hashes to a name a signed event lists.
for (const name of list("pictures")) {
  const where = `pictures/${name}`;
  if (!/^[0-9a-f]{64}\.jpg$/.test(name)) {
    fail(`${where}: not a picture an export holds`);
    continue;
  }
  if (!isPlain(where)) {
    fail(`${where}: not a plain file`);
    continue;
  }
  const h = name.slice(0, 64);
  if (!named.has(h)) {
    fail(`${where}: no signed event in this export names it`);
    continue;
  }
  if (sha256(read(where)) !== h) {
    fail(`${where}: its SHA-256 is not its name`);
    continue;
  }
  counts.pictures += 1;
}
for (const h of wanted) {
  if (!isPlain(`pictures/${h}.jpg`)) fail(`pictures/${h}.jpg: signed by a subject event, not here`);
}

// 6. Witnesses: each fingerprint given names a key in witness/<name>/key.pem (SHA-256 of its
// SPKI DER); every cosignature there is signed by it and names this unit; one at a seq of the
// exported chain carries that body's SHA-256 as its head; one at or after the last subject
// event covers the subject; one beyond the chain while the manifest says the chain ends at the
// newest event stored ("ends_at": "head") shows the tail was cut.
const NAME = "[a-z0-9](?:[a-z0-9-]{0,46}[a-z0-9])?";
const COSIGNATURE = new RegExp(
  `^jaga-witness v1\nwitness (${NAME})\nsite (${NAME})\ndevice (${NAME})\nseq ([1-9][0-9]{0,18})\n` +
    `head (${HEX})\ntime ([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3}Z)\n$`,
);
function publicKey(name) {
  try {
    return createPublicKey(read(name));
  } catch {
    return null;
  }
}
function chainClaim() {
  const lines = isPlain("manifest.json") ? read("manifest.json").toString("utf8").split("\n") : [];
  const ends = lines.map((l) => /^ {4}"ends_at": "([a-z]+)",$/.exec(l)).filter(Boolean);
  const lasts = lines.map((l) => /^ {4}"last_seq": ([0-9]+),$/.exec(l)).filter(Boolean);
  if (ends.length !== 1 || lasts.length !== 1) {
    fail("manifest.json: does not say where the chain ends, in the form evidence export writes");
    return false;
  }
  if (BigInt(lasts[0][1]) !== last.seq) {
    fail(`manifest.json: says the chain ends at seq ${lasts[0][1]}; its events end at seq ${last.seq}`);
  }
  return ends[0][1] === "head";
}
function checkWitness(name, wpin, endsAtHead) {
  const where = `witness/${name}`;
  const keyName = `${where}/key.pem`;
  const key = publicKey(keyName);
  const strip = (t) => t.replace(/\n+$/, "");
  if (strip(key.export({ type: "spki", format: "pem" })) !== strip(read(keyName).toString("latin1"))) {
    fail(`${keyName}: not one PEM public key`);
    return;
  }
  if (key.asymmetricKeyType !== "ed25519") {
    fail(`${keyName}: not an Ed25519 key`);
    return;
  }
  let covered = null;
  for (const file of list(where)) {
    if (file === "key.pem") continue;
    const at = `${where}/${file}`;
    if (!/^[0-9]{20}-[0-9]{15}\.(body|sig)$/.test(file)) {
      fail(`${at}: not a file an export holds`);
      continue;
    }
    if (file.endsWith(".sig")) {
      try {
        lstatSync(join(folder, at.replace(/\.sig$/, ".body")));
      } catch {
        fail(`${at}: no body beside it`);
      }
      continue;
    }
    const sigAt = at.replace(/\.body$/, ".sig");
    if (!isPlain(at)) {
      fail(`${at}: not a plain file`);
      continue;
    }
    if (!isPlain(sigAt)) {
      fail(`${sigAt}: missing or not a plain file`);
      continue;
    }
    const body = read(at);
    const m = COSIGNATURE.exec(body.toString("latin1"));
    if (!m) {
      fail(`${at}: not a cosignature (jaga-witness v1) in the form a witness signs`);
      continue;
    }
    if (!verify(null, body, key, read(sigAt))) {
      fail(`${sigAt}: does not verify over ${at}`);
      continue;
    }
    const before = problems.length;
    const [, w, s, d, seqText, head, time] = m;
    const seq = BigInt(seqText);
    if (w !== name) fail(`${at}: a cosignature by ${w}, not by ${name}`);
    if (s !== site || d !== device) fail(`${at}: cosigns ${s}/${d}, not ${site}/${device}`);
    if (seq < firstSeq) {
      fail(`${at}: seq ${seq} lies before the exported chain`);
    } else if (seq > last.seq) {
      if (endsAtHead) {
        fail(`${at}: ${name} cosigned seq ${seq} at ${time}, but manifest.json says seq ${last.seq} is the newest event stored: the chain was cut`);
      } else if (problems.length === before) {
        console.log(`witness ${name}: seq ${seq} cosigned at ${time}, beyond the exported chain`);
      }
    } else {
      const event = `events/${seqText.padStart(20, "0")}.body`;
      if (!isPlain(event)) {
        fail(`${at}: cosigns seq ${seq}; ${event}: missing`);
        continue;
      }
      const got = sha256(read(event));
      if (got !== head) {
        fail(`${at}: cosigns seq ${seq} with head ${head}, but ${event} hashes to ${got}`);
      } else if (problems.length === before) {
        console.log(`witness ${name}: seq ${seq} cosigned at ${time}`);
        if (covered === null && (maxSubject === null || seq >= maxSubject)) {
          covered = `seq ${seq} by ${time}`;
        }
      }
    }
    if (problems.length === before) counts.cosignatures += 1;
  }
  if (covered === null) {
    fail(`witness ${name} (${wpin}): no cosignature covering the subject's events`);
  } else {
    console.log(`witness ${name} saw the chain to ${covered}: the subject's events existed then`);
  }
}
if (witnessPins.length > 0) {
  if (last === null) {
    for (const w of witnessPins) fail(`witness ${w}: no exported chain to check it by`);
  } else {
    const endsAtHead = chainClaim();
    const keys = new Map();
    for (const name of list("witness")) {
      if (!isFolder(`witness/${name}`) || !isPlain(`witness/${name}/key.pem`)) continue;
      const key = publicKey(`witness/${name}/key.pem`);
      if (key === null) continue;
      try {
        keys.set(name, sha256(key.export({ type: "spki", format: "der" })));
      } catch {
        continue;
      }
    }
    for (const w of witnessPins) {
      const names = [...keys].filter(([, fp]) => fp === w).map(([n]) => n);
      if (names.length === 0) fail(`witness ${w}: no witness/<name>/key.pem with this fingerprint`);
      for (const name of names) checkWitness(name, w, endsAtHead);
    }
  }
}

finish(counts);
