// Helpers shared by the k6 scenarios.

// "20s", "1m30s", "500ms", "2h" -> seconds (k6's own duration syntax).
export function seconds(d) {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  const unit = { ms: 0.001, s: 1, m: 60, h: 3600 };
  let total = 0;
  let matched = '';
  let m;
  while ((m = re.exec(d)) !== null) {
    total += parseFloat(m[1]) * unit[m[2]];
    matched += m[0];
  }
  if (matched !== d || total <= 0) throw new Error(`bad duration: ${d}`);
  return total;
}

// Load tests target this machine only. k6 has no WHATWG URL global; the host is what sits
// between "://" and the next ":" or "/".
export function requireLoopback(baseUrl) {
  const host = (baseUrl.match(/^https?:\/\/(\[[^\]]*\]|[^:/]+)/) || [])[1];
  if (!(host === 'localhost' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host || ''))) {
    throw new Error(`refusing non-loopback BASE_URL ${baseUrl}`);
  }
}
