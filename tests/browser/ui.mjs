// Drives Tessera's web UI in headless Chromium, as a person would: the welcome page, an upload
// through the form, the file's page, a download compared byte for byte, and a screenshot that must
// not be blank. Usage: node ui.mjs GATEWAY_URL OUTPUT_DIR
import { chromium } from "playwright-core";
import { randomBytes, createHash } from "node:crypto";
import { writeFileSync, statSync, readFileSync } from "node:fs";
import { join } from "node:path";

const [url, outDir] = process.argv.slice(2);
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
  await Promise.all([page.waitForURL(/t=info/, { timeout: 60_000 }), page.click("button[type=submit]")]);
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
  await Promise.all([page.waitForURL(/t=info/), page.click("form.row button")]);
  if (!(await page.textContent("main")).includes(readCap)) fail("open a cap did not reach the file's page");

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

  if (blocked.length) fail(`the UI fetched outside the gateway: ${blocked.join(", ")}`);
  // A blank page compresses to a few kB; the rendered welcome page must be richer than that.
  const size = statSync(shot).size;
  if (size < 15_000) fail(`the screenshot looks blank (${size} bytes)`);
  console.log(`ok: web UI upload, file page, download and open-a-cap in Chromium (screenshot ${size} bytes)`);
} finally {
  await browser.close();
}
