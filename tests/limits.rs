//! Pathological nesting is refused before parsing, quickly, with the limit and the file named.
//!
//! Each input here is far deeper than any real file (100k or 400k levels). Before the limits,
//! 100k levels of YAML took 17 s and 400k nested XML elements 32 s; these tests make no timing
//! claims, they check that such input is refused for its depth.

use std::path::Path;

use loupe::formats::{Format, FormatError, import};
use loupe::inference::ModelDescriptor;
use loupe::limits::{MAX_NESTING_DEPTH, MAX_TOML_NESTING_DEPTH};

fn refused(format: Format, path: &Path) -> String {
    match import(format, path, None) {
        Ok(parsed) => panic!("{} was imported: {parsed:?}", path.display()),
        Err(e) => e.to_string(),
    }
}

fn assert_names_limit_and_file(message: &str, limit: usize, file: &Path) {
    assert!(
        message.contains(&format!("limit of {limit} levels")),
        "the limit is not named: {message}"
    );
    assert!(
        message.contains(&file.display().to_string()),
        "the file is not named: {message}"
    );
}

#[test]
fn yaml_flow_nesting_of_100k_levels_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = dir.path().join("data.yaml");
    let n = 100_000;
    let text = format!("names: {}a{}\n", "[".repeat(n), "]".repeat(n));
    std::fs::write(&yaml, text).expect("write");
    let message = refused(Format::Yolo, &yaml);
    assert_names_limit_and_file(&message, MAX_NESTING_DEPTH, &yaml);
    assert!(message.contains("data.yaml:1:"), "{message}");
}

#[test]
fn yaml_block_nesting_of_200k_levels_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = dir.path().join("data.yaml");
    // `- ` per level: 200k levels on one line (compact nested sequences).
    let mut text = String::from("names:\n");
    text.push_str(&"- ".repeat(200_000));
    text.push_str("a\n");
    std::fs::write(&yaml, text).expect("write");
    let message = refused(Format::Yolo, &yaml);
    assert_names_limit_and_file(&message, MAX_NESTING_DEPTH, &yaml);
    // Indentation, one level per line (1,000 lines: more would pass the size limit first).
    let text: String = (0..1_000)
        .map(|i| format!("{}k:\n", " ".repeat(i)))
        .collect();
    std::fs::write(&yaml, text).expect("write");
    let message = refused(Format::Yolo, &yaml);
    assert_names_limit_and_file(&message, MAX_NESTING_DEPTH, &yaml);
}

#[test]
fn xml_nesting_of_400k_elements_is_refused_for_voc_and_cvat() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 400_000;
    for (format, name, root) in [
        (Format::Voc, "a.xml", "annotation"),
        (Format::Cvat, "annotations.xml", "annotations"),
    ] {
        let xml = dir.path().join(name);
        let text = format!(
            "<{root}>{}{}</{root}>",
            "<object>".repeat(n),
            "</object>".repeat(n)
        );
        std::fs::write(&xml, text).expect("write");
        let message = refused(format, &xml);
        assert_names_limit_and_file(&message, MAX_NESTING_DEPTH, &xml);
        assert!(message.contains("invalid XML"), "{message}");
    }
}

#[test]
fn json_nesting_of_100k_levels_is_refused_by_every_json_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 100_000;
    let deep = format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let cases = [
        (Format::Coco, format!("{{\"images\": {deep}}}")),
        (Format::CocoResults, deep.clone()),
        (Format::LabelStudio, deep.clone()),
        (Format::Labelme, format!("{{\"shapes\": {deep}}}")),
        (Format::Createml, deep.clone()),
    ];
    for (format, text) in cases {
        let file = dir.path().join(format!("{format}.json"));
        std::fs::write(&file, text).expect("write");
        let message = refused(format, &file);
        assert_names_limit_and_file(&message, MAX_NESTING_DEPTH, &file);
        assert!(
            matches!(import(format, &file, None), Err(FormatError::Json { .. })),
            "{format}: {message}"
        );
    }
}

#[test]
fn toml_descriptor_nesting_of_100k_levels_is_refused() {
    let n = 100_000;
    for text in [
        format!(
            "decoder = \"yolov8\"\nnames = {}\"a\"{}\n",
            "[".repeat(n),
            "]".repeat(n)
        ),
        format!("x = {}1{}\n", "{a = ".repeat(n), "}".repeat(n)),
        format!("[{}]\n", vec!["k"; n].join(".")),
    ] {
        let err = ModelDescriptor::from_toml(&text, "deep.toml").expect_err("refused");
        let message = err.to_string();
        assert!(message.contains("deep.toml"), "{message}");
        assert!(
            message.contains(&format!("limit of {MAX_TOML_NESTING_DEPTH} levels")),
            "{message}"
        );
        // The message names the line instead of quoting it.
        assert!(message.len() < 300, "{message}");
    }
}

#[test]
fn roster_nesting_of_100k_levels_is_refused() {
    // The roster is JSON read into typed structs by serde_json (src/sync is not changed here):
    // a deep value where a string or a member is expected is refused at its first level, and
    // serde_json's recursion limit (128) stops deep values it builds.
    let n = 100_000;
    let deep = format!("{}1{}", "[".repeat(n), "]".repeat(n));
    let outer = format!("{{\"body\": {deep}, \"signature\": \"\"}}");
    let body = format!("{{\"format\": 1, \"version\": 1, \"members\": {deep}}}");
    let inner = serde_json::json!({ "body": body, "signature": "" }).to_string();
    for text in [outer, inner] {
        let err = loupe::sync::Roster::open(text.as_bytes(), None).expect_err("refused");
        assert!(err.to_string().contains("not a roster"), "{err}");
    }
}

#[test]
fn config_files_larger_than_the_limit_are_refused_unread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = dir.path().join("data.yaml");
    let file = std::fs::File::create(&yaml).expect("create");
    // A sparse file: its length is past the limit without writing the bytes.
    file.set_len(loupe::limits::MAX_CONFIG_BYTES + 1)
        .expect("set length");
    let message = refused(Format::Yolo, &yaml);
    assert!(
        message.contains(&format!(
            "limit of {} bytes",
            loupe::limits::MAX_CONFIG_BYTES
        )),
        "{message}"
    );
}

/// The DICOM files fuzzing found that made the parser reserve and fill gigabytes for an element
/// whose declared length runs past the end of the file: refused before parsing, naming the
/// element, with memory bounded by the file (tests/data/fuzz-regressions/dicom).
#[test]
fn dicom_elements_longer_than_the_file_are_refused_before_parsing() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz-regressions/dicom");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("regressions") {
        let path = entry.expect("entry").path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("oom-"))
        {
            continue;
        }
        checked += 1;
        for result in [
            loupe::imaging::probe(&path).map(|_| ()),
            loupe::imaging::decode(&path).map(|_| ()),
        ] {
            let err = result.expect_err("a damaged file is refused").to_string();
            assert!(err.contains(&*path.to_string_lossy()), "{err}");
        }
        let err = loupe::imaging::decode(&path)
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("remain") || err.contains("no Columns"),
            "{}: {err}",
            path.display()
        );
    }
    assert_eq!(checked, 4);
}

/// Fuzzing findings of 2026-12-06, replayed: a DICOM file whose RLE data made dicom-rs's decoder
/// index past a segment (a panic) is refused with its name; a Label Studio file whose image name
/// has a multi-byte character at byte 8 no longer panics the upload-prefix check.
#[test]
fn fuzzing_findings_of_december_6_are_refused_or_read_without_a_panic() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz-regressions");
    let dicom = dir.join("dicom/panic-rle-segment-end.dcm");
    let err = loupe::imaging::decode(&dicom)
        .expect_err("damaged RLE data is refused")
        .to_string();
    assert!(
        err.contains("panic-rle-segment-end.dcm") && err.contains("DICOM pixel data"),
        "{err}"
    );
    // 856 bytes whose file meta group is damaged where our length check walked it: dicom-object
    // read on and reserved an 800 MB element (850 MB resident, a second, a 10 s fuzzing timeout
    // under load); now refused from the meta group, before the data set is read.
    let declared = dir.join("dicom/slow-declared-size.dcm");
    let err = loupe::imaging::decode(&declared)
        .expect_err("a frame bigger than its data is refused")
        .to_string();
    assert!(
        err.contains("slow-declared-size.dcm") && err.contains("declares"),
        "{err}"
    );
    // Bits Stored 11024 made dicom-rs's rescale table assert (a panic past the decoder, which
    // stopped `loupe add`): refused from the header.
    let bits = dir.join("dicom/panic-bits-stored.dcm");
    let err = loupe::imaging::decode(&bits)
        .expect_err("impossible Bits Stored is refused")
        .to_string();
    assert!(
        err.contains("panic-bits-stored.dcm") && err.contains("Bits Stored"),
        "{err}"
    );
    // An 11 kB file whose sequence item declares more bytes than its sequence: dicom-object
    // read the item on into the pixel data and reserved 4 GB for a garbage element (out of
    // memory under fuzzing); refused by the length walk, for the probe and the decode alike.
    let item = dir.join("dicom/oom-item-beyond-sequence.dcm");
    for err in [
        loupe::imaging::decode(&item)
            .expect_err("an item past its sequence is refused")
            .to_string(),
        loupe::imaging::probe(&item)
            .expect_err("the probe refuses it too")
            .to_string(),
    ] {
        assert!(
            err.contains("oom-item-beyond-sequence.dcm") && err.contains("sequence (0010,1002)"),
            "{err}"
        );
    }
    // 2.5 kB with a second file-meta group length: dicom-object began the data set elsewhere
    // than our length walk, reserved 1.4 GB (2.6 s, a fuzzing timeout under load) and then
    // failed; now refused from the meta group.
    let repeated = dir.join("dicom/slow-repeated-meta-group-length.dcm");
    let err = loupe::imaging::probe(&repeated)
        .expect_err("a repeated meta element is refused")
        .to_string();
    assert!(
        err.contains("slow-repeated-meta-group-length.dcm") && err.contains("out of order"),
        "{err}"
    );
    let tasks = dir.join("labelstudio/panic-upload-prefix-char-boundary.json");
    // Read or refused: either way an answer, not a panic.
    let _ = import(Format::LabelStudio, &tasks, None);
}
