//! SubRip (`srt`) and WebVTT (`vtt`) renderings of transcript segments, as OpenAI's
//! `response_format=srt|vtt` answers them (openai-whisper's `WriteSRT` / `WriteVTT`: cues
//! numbered from 1 in SRT, `HH:MM:SS,mmm` in SRT and `HH:MM:SS.mmm` in VTT after a `WEBVTT`
//! header, one blank line after each cue).

use super::models::Segment;

/// `seconds` as `HH:MM:SS<sep>mmm`, rounded to the millisecond; negative or non-finite
/// times are written as 0.
pub fn timestamp(seconds: f64, sep: char) -> String {
    let ms = if seconds.is_finite() && seconds > 0.0 {
        (seconds * 1000.0).round() as u64
    } else {
        0
    };
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, ms) = (rest / 1000, rest % 1000);
    format!("{h:02}:{m:02}:{s:02}{sep}{ms:03}")
}

/// Cue text: line breaks inside a segment's text would end the cue early, and `-->` would
/// read as a timing line, so both are replaced.
fn cue_text(text: &str) -> String {
    text.replace("-->", "->").replace(['\r', '\n'], " ")
}

/// SubRip text of `segments`.
pub fn srt(segments: &[Segment]) -> String {
    let mut out = String::new();
    for (i, s) in segments.iter().enumerate() {
        out.push_str(&format!(
            "{}\n{} --> {}\n{}\n\n",
            i + 1,
            timestamp(s.start_s, ','),
            timestamp(s.end_s, ','),
            cue_text(&s.text)
        ));
    }
    out
}

/// WebVTT text of `segments`.
pub fn vtt(segments: &[Segment]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for s in segments {
        out.push_str(&format!(
            "{} --> {}\n{}\n\n",
            timestamp(s.start_s, '.'),
            timestamp(s.end_s, '.'),
            cue_text(&s.text)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(a: f64, b: f64, t: &str) -> Segment {
        Segment {
            start_s: a,
            end_s: b,
            text: t.into(),
            tokens: vec![],
            seek_s: a,
            avg_logprob: None,
            no_speech_prob: None,
        }
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(0.0, ','), "00:00:00,000");
        assert_eq!(timestamp(30.0, '.'), "00:00:30.000");
        assert_eq!(timestamp(3725.4567, ','), "01:02:05,457");
        assert_eq!(timestamp(-1.0, ','), "00:00:00,000");
        assert_eq!(timestamp(f64::NAN, ','), "00:00:00,000");
    }

    #[test]
    fn cues() {
        let s = [
            seg(0.0, 30.0, "Hello there."),
            seg(30.0, 41.5, "a\nb --> c"),
        ];
        assert_eq!(
            srt(&s),
            "1\n00:00:00,000 --> 00:00:30,000\nHello there.\n\n2\n00:00:30,000 --> 00:00:41,500\na b -> c\n\n"
        );
        assert_eq!(
            vtt(&s),
            "WEBVTT\n\n00:00:00.000 --> 00:00:30.000\nHello there.\n\n00:00:30.000 --> 00:00:41.500\na b -> c\n\n"
        );
        assert_eq!(srt(&[]), "");
        assert_eq!(vtt(&[]), "WEBVTT\n\n");
    }
}
