//! The JUnit XML report: one test case per trace, its failure with the diff.

use super::runner::{TraceReport, Verdict};
use crate::codec::xml::XmlWriter;

fn attr(w: &mut XmlWriter, name: &str, value: &str) {
    w.raw(&format!(" {name}=\""));
    w.raw(&quick_xml::escape::escape(value));
    w.raw("\"");
}

fn seconds(d: std::time::Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// The report as JUnit XML (the schema CI systems read: testsuites/testsuite/testcase).
pub fn report(reports: &[TraceReport]) -> String {
    let failures = reports
        .iter()
        .filter(|r| r.error.is_none() && !r.passed())
        .count();
    let errors = reports.iter().filter(|r| r.error.is_some()).count();
    let total: std::time::Duration = reports.iter().map(|r| r.elapsed).sum();
    let mut w = XmlWriter::default();
    w.raw("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites");
    let counts = [
        ("tests", reports.len()),
        ("failures", failures),
        ("errors", errors),
    ];
    for (n, v) in counts {
        attr(&mut w, n, &v.to_string());
    }
    attr(&mut w, "time", &seconds(total));
    w.raw(">\n  <testsuite");
    attr(&mut w, "name", "pagonode replay");
    for (n, v) in counts {
        attr(&mut w, n, &v.to_string());
    }
    attr(&mut w, "time", &seconds(total));
    w.raw(">\n");
    for r in reports {
        w.raw("    <testcase");
        attr(&mut w, "name", &r.name);
        attr(&mut w, "classname", &format!("traces.{}", r.name));
        attr(&mut w, "file", &r.path);
        attr(&mut w, "time", &seconds(r.elapsed));
        w.raw(">\n");
        let steps: String = r
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let v = match &s.verdict {
                    Verdict::Pass => "PASS".to_string(),
                    Verdict::Skipped => "SKIP".to_string(),
                    Verdict::Fail(why) => format!("FAIL\n{why}"),
                };
                format!("step {} {}: {v}\n", i + 1, s.label)
            })
            .collect();
        match (&r.error, r.failure()) {
            (Some(e), _) => {
                w.raw("      <error");
                attr(&mut w, "message", e);
                w.raw(">");
                w.text(e);
                w.raw("</error>\n");
            }
            (None, Some(first)) => {
                w.raw("      <failure");
                attr(&mut w, "message", first.lines().next().unwrap_or(""));
                w.raw(">");
                w.text(&steps);
                w.raw("</failure>\n");
            }
            (None, None) => {}
        }
        if !r.description.is_empty() {
            w.raw("      <system-out>");
            w.text(&format!("{}\n{steps}", r.description));
            w.raw("</system-out>\n");
        }
        w.raw("    </testcase>\n");
    }
    w.raw("  </testsuite>\n</testsuites>\n");
    w.into_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::runner::StepReport;
    use std::time::Duration;

    #[test]
    fn failures_carry_the_diff_and_the_xml_is_well_formed() {
        let step = |v| StepReport {
            label: "activate".into(),
            verdict: v,
            elapsed: Duration::from_millis(3),
        };
        let ok = TraceReport {
            name: "a".into(),
            path: "a.toml".into(),
            description: "proves <a>".into(),
            steps: vec![step(Verdict::Pass)],
            error: None,
            elapsed: Duration::from_millis(5),
        };
        let ko = TraceReport {
            steps: vec![
                step(Verdict::Fail(
                    "answer differs at /x\n  expected: \"A\" & B".into(),
                )),
                step(Verdict::Skipped),
            ],
            name: "b".into(),
            ..ok.clone()
        };
        let xml = report(&[ok, ko]);
        assert!(
            xml.contains("tests=\"2\" failures=\"1\" errors=\"0\""),
            "{xml}"
        );
        assert!(
            xml.contains("message=\"step 1 activate: answer differs at /x\""),
            "{xml}"
        );
        let tree = crate::replay::compare::parse(&xml).unwrap();
        let suite = &tree.children[0];
        assert_eq!(suite.children.len(), 2);
        assert!(
            suite.children[1].children[0]
                .text
                .contains("expected: \"A\" & B")
        );
    }
}
