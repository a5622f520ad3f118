//! The HTML report escapes everything that comes from a manifest or a system output.

use std::path::Path;
use std::process::Command;

fn write(p: &Path, s: &str) {
    std::fs::write(p, s).unwrap();
}

#[test]
fn report_escapes_markup_from_manifest_and_outputs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    write(&d.join("a.wav"), "audio");
    write(&d.join("b.wav"), "audio");
    write(
        &d.join("manifest.tsv"),
        "id\tfile\tduration_s\treference\tsource\tlicense\n\
         x<i>&y\ta.wav\t1.0\t<script>alert(\"ref\")</script> & co\t<em>src</em>\tCC0\n\
         plain\tb.wav\t1.0\tfine words\ts\tCC0\n",
    );
    write(
        &d.join("hyp.json"),
        &serde_json::json!({"clips": [
            {"id": "x<i>&y", "text": "<b>bold</b> & <img src=x onerror=alert(1)>"},
            {"id": "plain", "text": "fine words"}
        ]})
        .to_string(),
    );
    let o = Command::new(env!("CARGO_BIN_EXE_voxtrace"))
        .current_dir(d)
        .args([
            "eval",
            "--manifest",
            "manifest.tsv",
            "--system",
            "up=transcripts:hyp.json",
            "--system",
            "bad=cmd:echo '<script>evil()</script> & more' >&2; exit 3 # {audio}",
            "--run-id",
            "esc",
            "--quiet",
        ])
        .output()
        .unwrap();
    // `bad` fails on every clip: the run is written, but scored nothing for it (exit 1).
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("nothing was scored for system \"bad\""),
        "{err}"
    );
    let html = std::fs::read_to_string(d.join("reports/esc/report.html")).unwrap();
    assert_eq!(
        html.matches("<script").count(),
        1,
        "only the report's own script tag"
    );
    assert!(!html.contains("<b>bold"));
    assert!(!html.contains("<img"));
    assert!(!html.contains("<i>&"));
    assert!(!html.contains("evil()</script>"));
    assert!(
        html.contains("&lt;script&gt;alert(&quot;ref&quot;)&lt;&#x2f;script&gt; &amp; co"),
        "reference escaped"
    );
    assert!(
        html.contains("&lt;b&gt;bold&lt;&#x2f;b&gt; &amp; &lt;img"),
        "hypothesis escaped"
    );
    assert!(html.contains("x&lt;i&gt;&amp;y"), "id escaped");
    assert!(html.contains("&lt;script&gt;evil()"), "error text escaped");
    // The JSON keeps the texts verbatim.
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("reports/esc/results.json")).unwrap())
            .unwrap();
    assert_eq!(
        r["systems"][0]["utterances"][0]["hypothesis"],
        "<b>bold</b> & <img src=x onerror=alert(1)>"
    );
}
