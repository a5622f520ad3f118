//! Text, SRT and WebVTT renderings of [`Segment`]s, as openai-whisper's writers
//! (openai/whisper `whisper/utils.py`: `WriteTXT`, `WriteSRT`, `WriteVTT`, `format_timestamp`):
//! times rounded to the millisecond, SRT with hours always and a comma before the
//! milliseconds, WebVTT with hours only when non-zero and a dot; segment text trimmed and
//! `-->` inside it replaced by `->` (so a line of text cannot read as a cue timing).

use super::longform::Segment;

/// `seconds` as `[HH:]MM:SS<marker>mmm` (openai `format_timestamp`): milliseconds rounded,
/// negative times clamped to 0, hours always when `always_include_hours`.
pub fn format_timestamp(seconds: f64, always_include_hours: bool, marker: char) -> String {
    let ms_total = (seconds.max(0.0) * 1000.0).round() as u64;
    let hours = ms_total / 3_600_000;
    let minutes = ms_total / 60_000 % 60;
    let secs = ms_total / 1000 % 60;
    let ms = ms_total % 1000;
    if always_include_hours || hours > 0 {
        format!("{hours:02}:{minutes:02}:{secs:02}{marker}{ms:03}")
    } else {
        format!("{minutes:02}:{secs:02}{marker}{ms:03}")
    }
}

fn cue_text(s: &Segment) -> String {
    s.text.trim().replace("-->", "->")
}

/// One line per segment, its text trimmed (openai `WriteTXT`).
pub fn to_text(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| format!("{}\n", s.text.trim()))
        .collect()
}

/// SubRip: numbered cues from 1, `HH:MM:SS,mmm --> HH:MM:SS,mmm`, text, blank line.
pub fn to_srt(segments: &[Segment]) -> String {
    let mut out = String::new();
    for (i, s) in segments.iter().enumerate() {
        out.push_str(&format!(
            "{}\n{} --> {}\n{}\n\n",
            i + 1,
            format_timestamp(s.start_s, true, ','),
            format_timestamp(s.end_s, true, ','),
            cue_text(s)
        ));
    }
    out
}

/// WebVTT: `WEBVTT` header, then `[HH:]MM:SS.mmm --> [HH:]MM:SS.mmm`, text, blank line per cue.
pub fn to_vtt(segments: &[Segment]) -> String {
    let mut out = String::from("WEBVTT\n\n");
    for s in segments {
        out.push_str(&format!(
            "{} --> {}\n{}\n\n",
            format_timestamp(s.start_s, false, '.'),
            format_timestamp(s.end_s, false, '.'),
            cue_text(s)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(start_s: f64, end_s: f64, text: &str) -> Segment {
        Segment {
            start_s,
            end_s,
            text: text.into(),
            tokens: vec![],
            seek_s: 0.0,
            avg_logprob: 0.0,
            no_speech_prob: 0.0,
        }
    }

    fn sample() -> Vec<Segment> {
        vec![
            seg(0.0, 2.5, " And so my fellow Americans,"),
            seg(2.5, 61.0004, "ask not --> what"),
            seg(3599.9996, 3725.12, "an hour in."),
        ]
    }

    #[test]
    fn timestamps_round_to_the_millisecond() {
        assert_eq!(format_timestamp(0.0, true, ','), "00:00:00,000");
        assert_eq!(format_timestamp(61.0004, false, '.'), "01:01.000");
        assert_eq!(format_timestamp(1.2345, false, '.'), "00:01.235");
        assert_eq!(format_timestamp(3599.9996, false, '.'), "01:00:00.000");
        assert_eq!(format_timestamp(-0.5, true, ','), "00:00:00,000");
    }

    #[test]
    fn srt_snapshot() {
        insta::assert_snapshot!(to_srt(&sample()));
    }

    #[test]
    fn vtt_snapshot() {
        insta::assert_snapshot!(to_vtt(&sample()));
    }

    #[test]
    fn text_snapshot() {
        insta::assert_snapshot!(to_text(&sample()));
    }

    #[test]
    fn no_segments() {
        assert_eq!(to_srt(&[]), "");
        assert_eq!(to_vtt(&[]), "WEBVTT\n\n");
        assert_eq!(to_text(&[]), "");
    }
}
