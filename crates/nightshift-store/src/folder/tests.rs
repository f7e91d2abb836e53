use super::*;
use std::os::unix::ffi::OsStrExt;

fn store() -> (tempfile::TempDir, Layout, FolderStore) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = FolderStore::new(dir.path());
    store.create_layout().expect("layout");
    (dir, store.layout().clone(), store)
}

#[test]
fn filing_a_hard_linked_task_leaves_the_other_name_untouched() -> Result<(), StoreError> {
    let (dir, home, store) = store();
    let outside = dir.path().join("outside.md");
    let text = "# linked\n\nbody\n";
    fs::write(&outside, text).map_err(at(&outside))?;
    let running = home.task_file(TaskState::Running, "linked");
    fs::hard_link(&outside, &running).map_err(at(&running))?;

    let filed = store.finish_now(
        "linked",
        TaskState::Running,
        TaskState::Done,
        "\n<!-- report -->\n",
    )?;
    assert_eq!(fs::read_to_string(&outside).map_err(at(&outside))?, text);
    let got = fs::read_to_string(&filed).map_err(at(&filed))?;
    assert_eq!(got, format!("{text}\n<!-- report -->\n"));
    Ok(())
}

#[test]
fn a_symlinked_task_is_not_filed_through_its_link() -> Result<(), StoreError> {
    let (dir, home, store) = store();
    let outside = dir.path().join("outside.md");
    fs::write(&outside, "# linked\n").map_err(at(&outside))?;
    let running = home.task_file(TaskState::Running, "linked");
    std::os::unix::fs::symlink(&outside, &running).map_err(at(&running))?;
    let result = store.finish_now("linked", TaskState::Running, TaskState::Done, "report");
    assert!(result.is_err(), "{result:?}");
    assert_eq!(
        fs::read_to_string(&outside).map_err(at(&outside))?,
        "# linked\n"
    );
    Ok(())
}

/// An entry swapped for a link or a FIFO after the scan looked at it is not read
/// through, and does not block.
#[test]
fn parsing_never_reads_through_a_link_or_blocks_on_a_fifo() -> Result<(), StoreError> {
    let (dir, home, store) = store();
    let queue = home.state_dir(TaskState::Queued);
    let outside = dir.path().join("outside.md");
    fs::write(&outside, "# t\n").map_err(at(&outside))?;
    let link = queue.join("link.md");
    std::os::unix::fs::symlink(&outside, &link).map_err(at(&link))?;
    let error = store
        .parse_file("link", &link, test_rules())
        .err()
        .unwrap_or_default();
    assert!(error.contains("cannot read"), "{error}");
    let fifo = queue.join("fifo.md");
    // mkfifo(1): rustix has no mknodat on macOS.
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .map_err(at(&fifo))?;
    assert!(made.success(), "mkfifo {}", fifo.display());
    let error = store
        .parse_file("fifo", &fifo, test_rules())
        .err()
        .unwrap_or_default();
    assert!(error.contains("not a regular file"), "{error}");
    Ok(())
}

#[test]
fn a_name_too_long_for_an_id_is_set_aside_under_a_shorter_one() -> Result<(), StoreError> {
    let (_dir, home, store) = store();
    let queue = home.state_dir(TaskState::Queued);
    let long = queue.join(format!("{}.md", "a".repeat(250)));
    fs::write(&long, "# t\n").map_err(at(&long))?;
    // 100 bytes that are not UTF-8 become 300 bytes of `%XX`.
    let mut name = vec![0xff_u8; 100];
    name.extend_from_slice(b".md");
    let odd = queue.join(std::ffi::OsStr::from_bytes(&name));
    fs::write(&odd, "# t\n").map_err(at(&odd))?;

    let scan = store.scan_now(test_rules(), SystemTime::now())?;
    assert_eq!(scan.invalid.len(), 2, "{:?}", scan.invalid);
    for bad in &scan.invalid {
        let moved = store.reject_now(&bad.path, &bad.error)?;
        assert!(moved.is_file(), "{}", moved.display());
        let note = fs::read_to_string(error_file(&moved)).map_err(at(&moved))?;
        assert_eq!(note, format!("{}\n", bad.error));
    }
    assert_eq!(fs::read_dir(&queue).map_err(at(&queue))?.count(), 0);
    Ok(())
}

#[test]
fn the_scan_sets_aside_what_is_not_a_plain_task_file() -> Result<(), StoreError> {
    let (dir, home, store) = store();
    let queue = home.state_dir(TaskState::Queued);
    let outside = dir.path().join("outside.md");
    fs::write(&outside, "# t\n").map_err(at(&outside))?;
    fs::hard_link(&outside, queue.join("hard.md")).map_err(at(&queue))?;
    std::os::unix::fs::symlink(&outside, queue.join("soft.md")).map_err(at(&queue))?;
    fs::create_dir(queue.join("folder.md")).map_err(at(&queue))?;
    let odd = queue.join(std::ffi::OsStr::from_bytes(b"caf\xe9.md"));
    fs::write(&odd, "# t\n").map_err(at(&odd))?;
    fs::write(queue.join("good.md"), "# t\n").map_err(at(&queue))?;
    // Not task files at all: left alone, as before.
    fs::write(queue.join(".draft.md"), "# t\n").map_err(at(&queue))?;
    fs::write(
        queue.join(std::ffi::OsStr::from_bytes(b"notes\xff.txt")),
        "x",
    )
    .map_err(at(&queue))?;

    let scan = store.scan_now(test_rules(), SystemTime::now())?;
    let ids: Vec<&str> = scan.queued.iter().map(|q| q.task.id.as_str()).collect();
    assert_eq!(ids, ["good"]);
    let mut invalid: Vec<String> = scan
        .invalid
        .iter()
        .map(|i| i.path.file_name().map(escaped_name).unwrap_or_default())
        .collect();
    invalid.sort();
    assert_eq!(invalid, ["caf%E9.md", "folder.md", "hard.md", "soft.md"]);
    for bad in &scan.invalid {
        let moved = store.reject_now(&bad.path, &bad.error)?;
        assert!(fs::symlink_metadata(&moved).is_ok(), "{}", moved.display());
    }
    let failed = home.state_dir(TaskState::Failed);
    let note = fs::read_to_string(failed.join("caf%E9.error.txt")).map_err(at(&failed))?;
    assert!(note.contains(r#""caf\xE9.md""#), "{note}");
    assert!(
        fs::symlink_metadata(failed.join("soft.md"))
            .map_err(at(&failed))?
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read_to_string(&outside).map_err(at(&outside))?, "# t\n");
    Ok(())
}
