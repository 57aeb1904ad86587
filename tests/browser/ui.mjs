// Drives Tessera's web UI in headless Chromium, as a person would: the welcome page, an upload
// through the form, the file's page, a download compared byte for byte, a video that plays and
// seeks, the directory browser (create, make a folder, upload, download, rename, link, unlink, a
// read-only view), /status and an operation's page, a storage server's /storage, the introducer's page, and screenshots that
// must not be blank. Usage: node ui.mjs GATEWAY_URL OUTPUT_DIR [INTRODUCER_URL]
import { chromium } from "playwright-core";
import { randomBytes, createHash } from "node:crypto";
import { writeFileSync, statSync, readFileSync } from "node:fs";
import { join } from "node:path";

const [url, outDir, introducerUrl] = process.argv.slice(2);
const fail = (message) => { console.error(`FAIL: ${message}`); process.exit(1); };
const sha = (bytes) => createHash("sha256").update(bytes).digest("hex");

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--autoplay-policy=no-user-gesture-required", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  const blocked = [];
  page.on("request", (r) => { if (!r.url().startsWith(url)) blocked.push(r.url()); });

  await page.goto(url);
  const heading = await page.textContent("h1");
  if (!heading.includes("Upload a file")) fail(`welcome page heading: ${heading}`);
  const servers = await page.locator("table").first().textContent();
  if (!servers.includes("storage01")) fail(`welcome page lists no servers: ${servers}`);
  const shot = join(outDir, "welcome.png");
  await page.screenshot({ path: shot, fullPage: true });

  // Upload a file through the form (the script uses XHR with a progress bar).
  const content = randomBytes(700_000);
  const file = join(outDir, "photo of a cat.bin");
  writeFileSync(file, content);
  await page.setInputFiles("#file", file);
  await Promise.all([page.waitForURL(/t=info/, { timeout: 60_000 }), page.click("#upload button[type=submit]")]);
  const info = await page.textContent("main");
  if (!info.includes("photo of a cat.bin")) fail("the file page does not name the file");
  const readCap = (await page.textContent("#cap1")).trim();
  if (!readCap.startsWith("URI:CHK:")) fail(`no read cap on the file page: ${readCap}`);
  await page.screenshot({ path: join(outDir, "file.png"), fullPage: true });

  // Download through the page's links and compare.
  const href = await page.getAttribute("a.button:not(.secondary)", "href");
  const downloaded = await page.evaluate(async (link) => {
    const r = await fetch(link);
    return Array.from(new Uint8Array(await r.arrayBuffer()));
  }, href);
  if (sha(Buffer.from(downloaded)) !== sha(content)) fail(`downloaded bytes differ (${downloaded.length} bytes)`);

  // "Open a cap" goes to the file.
  await page.goto(url);
  await page.fill("input[name=uri]", readCap);
  await Promise.all([page.waitForURL(/t=info/), page.click("#open button")]);
  if (!(await page.textContent("main")).includes(readCap)) fail("open a cap did not reach the file's page");

  // The file page's Check form (verify every share) reports the file healthy.
  await page.check("#check input[name=verify]");
  await Promise.all([page.waitForURL(/t=check/, { timeout: 60_000 }), page.click("#check button")]);
  const verdict = await page.textContent("h1");
  if (verdict.trim() !== "Healthy") fail(`the check page says: ${verdict}`);
  await page.screenshot({ path: join(outDir, "check.png"), fullPage: true });

  // A video stored in the grid plays and seeks: the browser fetches it with Range requests.
  const clip = readFileSync(new URL("fixtures/clip.webm", import.meta.url));
  const clipCap = await page.evaluate(async (bytes) => {
    const r = await fetch("/uri", { method: "PUT", body: new Uint8Array(bytes) });
    return (await r.text()).trim();
  }, Array.from(clip));
  if (!clipCap.startsWith("URI:CHK:")) fail(`video upload failed: ${clipCap}`);
  const partial = [];
  page.on("response", (r) => { if (r.url().includes("clip.webm") && r.status() === 206) partial.push(r.headers()["content-range"]); });
  const played = await page.evaluate(async (src) => {
    const video = document.createElement("video");
    video.muted = true;
    video.src = src;
    document.body.appendChild(video);
    const once = (name) => new Promise((ok, no) => {
      video.addEventListener(name, ok, { once: true });
      video.addEventListener("error", () => no(new Error(`video error ${video.error && video.error.code}`)), { once: true });
    });
    await video.play();
    await new Promise((ok) => setTimeout(ok, 700));
    const advanced = video.currentTime;
    video.currentTime = 4.5;
    await once("seeked");
    return { duration: video.duration, advanced, seekedTo: video.currentTime, width: video.videoWidth };
  }, `/named/${encodeURIComponent(clipCap)}/clip.webm`);
  if (!(played.advanced > 0)) fail(`the video did not play: ${JSON.stringify(played)}`);
  if (Math.abs(played.duration - 6) > 0.2 || Math.abs(played.seekedTo - 4.5) > 0.3 || played.width !== 160) {
    fail(`the video did not seek as expected: ${JSON.stringify(played)}`);
  }
  if (partial.length === 0) fail("the video was not fetched with Range requests (no 206 answers)");
  console.log(`ok: a WebM video stored in the grid plays and seeks in Chromium (${partial.length} range responses)`);

  await directoryBrowser(page, readCap);

  // The welcome page links each storage server's status; the gateway's /status lists the
  // operations above (uploads and downloads, with their phases and servers) and no cap.
  await page.goto(url);
  if ((await page.locator("a.server-status").count()) < 1) fail("the welcome page links no server's status");
  // A storage server's own status page (another origin: its own tab, outside the gateway's check),
  // from the gateway's link: space, shares (the uploads above left some), the lease checker.
  const storageHref = await page.locator("a.server-status").first().getAttribute("href");
  const storage = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await storage.goto(new URL(storageHref, url).href);
  const storageText = await storage.textContent("body");
  for (const want of ["Storage server", "Accepting new shares", "Disk available to shares", "Immutable shares", "Lease expiration"]) {
    if (!storageText.includes(want)) fail(`the storage server's page shows no ${want}: ${storageText}`);
  }
  if (storageText.includes("URI:")) fail("a cap on a storage server's page");
  await storage.screenshot({ path: join(outDir, "storage.png"), fullPage: true });
  await storage.close();
  console.log(`ok: a storage server's /storage page, linked from the welcome page (${new URL(storageHref, url).pathname})`);
  await page.goto(new URL("/status", url).href);
  const ops = await page.textContent("#recent");
  for (const kind of ["upload", "download", "publish", "retrieve", "Finished", "encoding and pushing"]) {
    if (!ops.includes(kind)) fail(`/status lists no ${kind}: ${ops}`);
  }
  if (ops.includes("URI:")) fail("a cap on /status");
  await page.screenshot({ path: join(outDir, "status.png") });
  // An operation's own page (Tahoe's /status/up-N), from its link on /status.
  await page.click("#recent tr.op-upload a");
  await page.waitForSelector("#operation");
  if (!/\/status\/up-\d+$/.test(page.url())) fail(`the upload's link led to ${page.url()}`);
  const op = await page.textContent("body");
  for (const text of ["Finished", "encoding and pushing", "Servers ("]) {
    if (!op.includes(text)) fail(`the upload's page shows no ${text}: ${op}`);
  }
  if (op.includes("URI:")) fail("a cap on an operation's page");
  await page.screenshot({ path: join(outDir, "operation.png"), fullPage: true });

  if (blocked.length) fail(`the UI fetched outside the gateway: ${blocked.join(", ")}`);
  // A blank page compresses to a few kB; the rendered welcome page must be richer than that.
  const size = statSync(shot).size;
  if (size < 15_000) fail(`the screenshot looks blank (${size} bytes)`);

  // The introducer's welcome page (another origin: its own tab, outside the gateway's check).
  if (introducerUrl) {
    const intro = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await intro.goto(introducerUrl);
    const text = await intro.textContent("body");
    for (const want of ["Welcome to the Tessera Introducer", "storage: 5", "storage01", "gateway"]) {
      if (!text.includes(want)) fail(`the introducer's page shows no ${want}: ${text}`);
    }
    await intro.screenshot({ path: join(outDir, "introducer.png"), fullPage: true });
    console.log("ok: the introducer's page lists the 5 storage servers and the gateway");
  }
  console.log(`ok: web UI upload, file page, download, open-a-cap and the Check form in Chromium (screenshot ${size} bytes)`);
} finally {
  await browser.close();
}

/** The names in the directory listing, in page order. */
async function listing(page) {
  return page.$$eval("#listing tbody tr:not(.empty) td.n > :first-child", (cells) => cells.map((c) => c.textContent));
}

/** Runs `action`, which should make the page reload; fails with the page's notice if it shows one. */
async function reloadsAfter(page, what, action) {
  const loaded = page.waitForEvent("load", { timeout: 120_000 }).then(() => null);
  const notice = page.waitForSelector("#notice:not(.hidden)", { timeout: 120_000 }).then(() => page.textContent("#notice"));
  loaded.catch(() => {});
  notice.catch(() => {});
  await action();
  const message = await Promise.race([loaded, notice]);
  if (message) fail(`${what}: the page says ${JSON.stringify(message)}`);
  await page.waitForLoadState("load");
}

/** Fetches `link` (relative to the page) from inside the page: the bytes and some headers. */
async function fetchBytes(page, link) {
  return page.evaluate(async (href) => {
    const r = await fetch(href);
    return { status: r.status, disposition: r.headers.get("content-disposition"), bytes: Array.from(new Uint8Array(await r.arrayBuffer())) };
  }, link);
}

async function directoryBrowser(page, existingCap) {
  // Create a directory from the welcome page: the gateway redirects to its (empty) listing.
  await page.goto(url);
  await Promise.all([page.waitForURL(/\/uri\/URI(%3A|:)DIR2/, { timeout: 60_000 }), page.click("#mkdir button[type=submit]")]);
  await page.waitForLoadState("load");
  const dirUrl = page.url();
  if (!dirUrl.endsWith("/")) fail(`a directory's page should end with a slash: ${dirUrl}`);
  if (!(await page.textContent("#listing")).includes("This directory is empty.")) fail("a new directory is not shown as empty");
  if (!(await page.textContent(".meta")).includes("Writable")) fail("a new directory is not shown as writable");
  if ((await listing(page)).length !== 0) fail("a new directory lists children");

  // A folder inside it.
  await page.fill("#mkdir input[name=name]", "photos 2024");
  await reloadsAfter(page, "new folder", () => page.click("#mkdir button[type=submit]"));
  let names = await listing(page);
  if (JSON.stringify(names) !== JSON.stringify(["photos 2024"])) fail(`after mkdir the listing is ${JSON.stringify(names)}`);
  if (!(await page.getAttribute("#listing td.t .ic", "class")).includes("dir")) fail("the folder has no directory icon");

  // Into the folder: the breadcrumb names it and links back up.
  await Promise.all([page.waitForURL(/photos%202024\/$/), page.click("#listing td.n a")]);
  const folderUrl = page.url();
  const crumbs = await page.textContent("nav.crumbs");
  if (!crumbs.includes("photos 2024") || !/URI:DIR2:\w{6}/.test(crumbs)) fail(`breadcrumb: ${crumbs}`);
  if ((await page.getAttribute("#root-crumb", "href")) !== "../") fail("the root crumb does not link up");

  // Upload a file into it through the form (XHR with a progress bar).
  const content = randomBytes(300_000);
  const file = join(outDir, "holiday & friends #1.bin");
  writeFileSync(file, content);
  await page.setInputFiles("#file", file);
  await reloadsAfter(page, "upload", () => page.click("#upload button[type=submit]"));
  names = await listing(page);
  if (!names.includes("holiday & friends #1.bin")) fail(`after the upload the listing is ${JSON.stringify(names)}`);
  const row = page.locator("#listing tbody tr", { hasText: "holiday & friends #1.bin" });
  if (!(await row.locator("td.s").textContent()).includes("300.0 kB")) fail("the uploaded file's size is not shown");
  if (!/\d/.test(await row.locator("td.m").textContent())) fail("the uploaded file has no modification time");

  // Byte-exact download through the listing's link, and the "save" link.
  const href = await row.locator("td.n a").getAttribute("href");
  const got = await fetchBytes(page, href);
  if (got.status !== 200 || sha(Buffer.from(got.bytes)) !== sha(content)) fail(`download through the listing differs (HTTP ${got.status}, ${got.bytes.length} bytes)`);
  const saved = await fetchBytes(page, await row.locator("a", { hasText: "Save" }).getAttribute("href"));
  if (sha(Buffer.from(saved.bytes)) !== sha(content) || !/attachment/.test(saved.disposition || "")) fail(`the save link: ${saved.disposition}`);

  // Two files at once.
  const more = [join(outDir, "a.txt"), join(outDir, "b.txt")];
  writeFileSync(more[0], "first file, long enough not to be a literal cap in the grid");
  writeFileSync(more[1], "second");
  await page.setInputFiles("#file", more);
  await reloadsAfter(page, "two uploads", () => page.click("#upload button[type=submit]"));
  names = await listing(page);
  if (!names.includes("a.txt") || !names.includes("b.txt")) fail(`after two uploads the listing is ${JSON.stringify(names)}`);

  // An upload the gateway refuses shows its message in the page.
  await page.setInputFiles("#file", more[1]);
  await page.fill("#upload-name", "no/slashes");
  await page.click("#upload button[type=submit]");
  await page.waitForSelector("#notice:not(.hidden)", { timeout: 60_000 });
  const refused = await page.textContent("#notice");
  if (!/failed \(HTTP 4\d\d\)/.test(refused)) fail(`a refused upload shows ${JSON.stringify(refused)}`);
  await page.fill("#upload-name", "");
  await page.click("#dismiss");

  // Sorting by size puts the smallest first.
  await page.click("#listing th.s button");
  names = await listing(page);
  if (names[0] !== "b.txt") fail(`sorted by size: ${JSON.stringify(names)}`);

  // Rename (inline edit).
  await page.locator("#listing tbody tr", { hasText: "holiday & friends #1.bin" }).locator("button.rename").click();
  await page.fill("#listing form.inline-rename input", "renamed.bin");
  await reloadsAfter(page, "rename", () => page.press("#listing form.inline-rename input", "Enter"));
  names = await listing(page);
  if (!names.includes("renamed.bin") || names.includes("holiday & friends #1.bin")) fail(`after rename: ${JSON.stringify(names)}`);
  const renamed = await fetchBytes(page, await page.locator("#listing td.n a", { hasText: "renamed.bin" }).getAttribute("href"));
  if (sha(Buffer.from(renamed.bytes)) !== sha(content)) fail("the renamed file's bytes differ");

  // Renaming onto an existing name is refused, with the gateway's message in the page.
  await page.locator("#listing tbody tr", { hasText: "b.txt" }).locator("button.rename").click();
  await page.fill("#listing form.inline-rename input", "renamed.bin");
  await page.press("#listing form.inline-rename input", "Enter");
  await page.waitForSelector("#notice:not(.hidden)", { timeout: 60_000 });
  const clash = await page.textContent("#notice");
  if (!clash.includes("already a child")) fail(`renaming onto an existing name shows ${JSON.stringify(clash)}`);
  await page.click("#dismiss");
  await page.click("#listing form.inline-rename button.secondary");

  // Link an existing cap (the file uploaded from the welcome page).
  await page.fill("#link input[name=name]", "linked.bin");
  await page.fill("#link input[name=uri]", existingCap);
  await reloadsAfter(page, "link", () => page.click("#link button[type=submit]"));
  names = await listing(page);
  if (!names.includes("linked.bin")) fail(`after linking: ${JSON.stringify(names)}`);

  // Unlink (with a confirmation).
  page.once("dialog", (dialog) => dialog.accept());
  await reloadsAfter(page, "unlink", () => page.locator("#listing tbody tr", { hasText: "a.txt" }).locator("form.unlink button").click());
  names = await listing(page);
  if (names.includes("a.txt") || names.length !== 3) fail(`after unlink: ${JSON.stringify(names)}`);
  await page.screenshot({ path: join(outDir, "directory.png"), fullPage: true });

  // The read-only view lists the same children and offers no way to change them.
  const readonlyHref = await page.getAttribute("#readonly-link", "href");
  await page.goto(new URL(readonlyHref, folderUrl).href);
  if (!(await page.textContent(".meta")).includes("Read-only")) fail("the read-only view is not marked read-only");
  const roNames = await listing(page);
  if (JSON.stringify([...roNames].sort()) !== JSON.stringify([...names].sort())) fail(`read-only listing ${JSON.stringify(roNames)} vs ${JSON.stringify(names)}`);
  const controls = await page.$$eval("form, button.rename, input[type=file], input[type=text]", (els) => els.length);
  if (controls !== 0) fail(`the read-only view has ${controls} modification controls`);
  const viaRo = await fetchBytes(page, await page.locator("#listing td.n a", { hasText: "renamed.bin" }).getAttribute("href"));
  if (sha(Buffer.from(viaRo.bytes)) !== sha(content)) fail("download through the read-only view differs");

  // Without JavaScript every form still works: the gateway redirects back to the page.
  const plain = await browser.newContext({ javaScriptEnabled: false, viewport: { width: 1280, height: 900 } });
  try {
    const p = await plain.newPage();
    await p.goto(folderUrl.replace(/\/$/, ""));
    if (p.url() !== folderUrl) fail(`a slash-less directory URL should redirect to ${folderUrl}, got ${p.url()}`);
    const submit = async (what, form) => {
      await Promise.all([p.waitForEvent("load", { timeout: 120_000 }), p.click(`${form} button[type=submit]`)]);
      if (p.url() !== folderUrl) fail(`${what} without JavaScript ended at ${p.url()}: ${await p.textContent("main")}`);
    };
    await p.fill("#mkdir input[name=name]", "made without js");
    await submit("mkdir", "#mkdir");
    await p.setInputFiles("#file", more[0]);
    await p.fill("#upload-name", "plain upload.txt");
    await submit("upload", "#upload");
    await p.fill("#rename input[name=from_name]", "plain upload.txt");
    await p.fill("#rename input[name=to_name]", "plain renamed.txt");
    await submit("rename", "#rename");
    let plainNames = await listing(p);
    for (const name of ["made without js", "plain renamed.txt"]) {
      if (!plainNames.includes(name)) fail(`without JavaScript the listing lacks ${name}: ${JSON.stringify(plainNames)}`);
    }
    await Promise.all([p.waitForEvent("load"), p.locator("#listing tbody tr", { hasText: "made without js" }).locator("form.unlink button").click()]);
    plainNames = await listing(p);
    if (plainNames.includes("made without js")) fail("unlink without JavaScript did not remove the folder");
  } finally {
    await plain.close();
  }

  // Back at the top: the folder is still listed.
  await page.goto(dirUrl);
  if (JSON.stringify(await listing(page)) !== JSON.stringify(["photos 2024"])) fail("the top directory changed");
  console.log("ok: directory browser: create, new folder, upload (one and two files), download, save, error message, sort, rename, link, unlink, read-only view, and every form without JavaScript");
}
