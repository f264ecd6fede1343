//! The built web UI from `static_dir`: `GET /` and its assets, with no way out of the directory.

use std::path::{Component, Path, PathBuf};

use pingora::protocols::http::ServerSession;

use crate::reply::{self, ApiError, CommonHeaders};

/// Files larger than this are not served from memory.
const MAX_FILE_BYTES: u64 = 32 * 1024 * 1024;

/// A file to send.
pub struct StaticFile {
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Fingerprinted assets (`/assets/*`, built by Vite) never change under their name.
    pub immutable: bool,
}

/// Answers `GET`/`HEAD` of `path` with the file it names under `root` (see [`lookup`]).
/// `Err` for a refusal to send as the JSON error; the inner result is the write's.
pub async fn serve(
    session: &mut ServerSession,
    common: &CommonHeaders,
    root: &Path,
    path: &str,
) -> Result<pingora::Result<()>, ApiError> {
    let file = lookup(root, path).await?;
    let cache = if file.immutable {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let headers = [("cache-control", cache.to_string())];
    Ok(reply::send(
        session,
        common,
        200,
        file.content_type,
        &headers,
        file.body.into(),
    )
    .await)
}

/// Resolves a request path inside `root`. `/` and unknown extension-less paths (client-side
/// routes of the single-page app) serve `index.html`. Anything that would leave `root` is 404.
pub async fn lookup(root: &Path, raw_path: &str) -> Result<StaticFile, ApiError> {
    let rel = safe_relative(raw_path).ok_or_else(ApiError::not_found)?;
    let root = tokio::fs::canonicalize(root)
        .await
        .map_err(|_| ApiError::not_found())?;
    let mut candidate = root.join(&rel);
    if rel.as_os_str().is_empty()
        || tokio::fs::metadata(&candidate)
            .await
            .is_ok_and(|m| m.is_dir())
    {
        candidate = candidate.join("index.html");
    } else if rel.extension().is_none() && tokio::fs::metadata(&candidate).await.is_err() {
        candidate = root.join("index.html");
    }
    // Symlinks inside the directory must not lead outside it either.
    let real = tokio::fs::canonicalize(&candidate)
        .await
        .map_err(|_| ApiError::not_found())?;
    if !real.starts_with(&root) {
        return Err(ApiError::not_found());
    }
    let meta = tokio::fs::metadata(&real)
        .await
        .map_err(|_| ApiError::not_found())?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return Err(ApiError::not_found());
    }
    let body = tokio::fs::read(&real)
        .await
        .map_err(|_| ApiError::not_found())?;
    Ok(StaticFile {
        content_type: content_type(&real),
        body,
        immutable: rel.starts_with("assets"),
    })
}

/// The percent-decoded path as plain relative components, or `None` for anything suspicious
/// (`..`, absolute parts, backslashes, NUL, invalid UTF-8).
fn safe_relative(raw_path: &str) -> Option<PathBuf> {
    let decoded: Vec<u8> = percent_decode(raw_path.as_bytes())?;
    let decoded = String::from_utf8(decoded).ok()?;
    if decoded.contains(['\\', '\0']) {
        return None;
    }
    let mut rel = PathBuf::new();
    for part in Path::new(decoded.trim_start_matches('/')).components() {
        match part {
            Component::Normal(p) => rel.push(p),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(rel)
}

fn percent_decode(input: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = input.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    Some(out)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        "webmanifest" => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_is_refused() {
        for bad in [
            "/../etc/passwd",
            "/a/../../x",
            "/%2e%2e/x",
            "/%2E%2E%2Fx",
            "/a\\..\\b",
            "/%00",
            "/%zz",
            "/%",
        ] {
            assert_eq!(safe_relative(bad), None, "{bad}");
        }
        assert_eq!(
            safe_relative("/assets/app.js"),
            Some(PathBuf::from("assets/app.js"))
        );
        assert_eq!(safe_relative("/"), Some(PathBuf::new()));
        assert_eq!(safe_relative("/./a"), Some(PathBuf::from("a")));
    }

    #[tokio::test]
    async fn serves_files_and_spa_fallback_but_not_outside() {
        let dir = std::env::temp_dir().join(format!("sse-gw-static-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("www/assets")).unwrap();
        std::fs::write(dir.join("www/index.html"), "<html>").unwrap();
        std::fs::write(dir.join("www/assets/a.js"), "x").unwrap();
        std::fs::write(dir.join("secret.txt"), "no").unwrap();
        let root = dir.join("www");
        let f = lookup(&root, "/").await.unwrap();
        assert_eq!(
            (f.content_type, f.body.as_slice()),
            ("text/html; charset=utf-8", &b"<html>"[..])
        );
        let f = lookup(&root, "/assets/a.js").await.unwrap();
        assert!(f.immutable && f.content_type.starts_with("text/javascript"));
        assert_eq!(lookup(&root, "/some/route").await.unwrap().body, b"<html>");
        assert_eq!(
            lookup(&root, "/missing.js").await.err().unwrap().status,
            404
        );
        assert_eq!(
            lookup(&root, "/../secret.txt").await.err().unwrap().status,
            404
        );
        std::os::unix::fs::symlink(dir.join("secret.txt"), root.join("link.txt")).unwrap();
        assert_eq!(lookup(&root, "/link.txt").await.err().unwrap().status, 404);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
