#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Image sharing with real nodes on loopback: metadata stripped and orientation applied,
//! blobs pulled from the sender or the recipient's relay, checked chunk by chunk, resumed
//! after a cut; groups; size limits (C09); a photo with GPS (C10); a disappearing image (C11).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kith_node::{Error, Handle};
use kith_protocol::status::Status;
use kith_protocol::MessageId;
use kith_tests::images::{self, contains, DATE, SERIAL};
use kith_tests::relay_util::{add_relay, add_user};
use kith_tests::{init_logs, seed, wait_for, Harness, WAIT};

const IMG_WAIT: Duration = Duration::from_secs(60);

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// The received file of message `id` in `h`'s conversation `with`, once whole.
async fn received_file(h: &Handle, with: &str, id: MessageId) -> PathBuf {
    let f = wait_for(IMG_WAIT, || async {
        h.history(with, None)
            .ok()?
            .into_iter()
            .find(|m| m.id == id)?
            .image?
            .file
    })
    .await
    .expect("the image never arrived whole");
    PathBuf::from(f)
}

/// Checks a received copy of the EXIF photo: decodes, upright (the red block that was stored
/// top-left now shows top-right), `w`×`h`, and no metadata left.
fn check_upright_and_clean(file: &Path, w: u32, h: u32) {
    let bytes = std::fs::read(file).unwrap();
    assert!(!contains(&bytes, b"Exif\0\0"), "EXIF kept in {file:?}");
    assert!(!contains(&bytes, SERIAL.as_bytes()), "camera serial kept");
    assert!(!contains(&bytes, DATE.as_bytes()), "capture date kept");
    assert!(!contains(&bytes, b"http://ns.adobe.com/xap"), "XMP kept");
    let img = image::load_from_memory(&bytes).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (w, h), "dimensions of the rotated image");
    // Mean colours of 8x8 patches: a single pixel of the noise can be red by chance.
    let mean = |x0: u32, y0: u32| {
        let mut sum = [0u32; 3];
        for y in y0..y0 + 8 {
            for x in x0..x0 + 8 {
                let p = img.get_pixel(x, y);
                for c in 0..3 {
                    sum[c] += u32::from(p[c]);
                }
            }
        }
        sum.map(|v| v / 64)
    };
    let red = |p: [u32; 3]| p[0] > 180 && p[1] < 90 && p[2] < 90;
    let p = mean(w - 12, 4);
    assert!(red(p), "top-right is not red: {p:?}");
    let p = mean(4, 4);
    assert!(!red(p), "top-left is red: not rotated ({p:?})");
}

/// Files (not folders) under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// C10 and the group case: a photo with GPS, serial, date and orientation 6 arrives upright
/// and clean one-to-one, and to every member of a group of four.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_c10_a_photo_that_knows_where_it_was_taken() {
    init_logs();
    let s = seed();
    let dir = tempfile::tempdir().unwrap();
    let photo = images::with_exif(&images::jpeg(&images::noisy(1200, 800, s), 90), 6);
    assert!(contains(&photo, SERIAL.as_bytes()));
    let path = write(dir.path(), "photo.jpg", &photo);

    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let mut users = vec![];
    for n in ["alice", "bob", "carol", "dave"] {
        users.push(net.add(n).await.unwrap());
    }
    let ha = net.handle(users[0]).unwrap();
    let alice = net.peer_id(users[0]).to_string();
    let bob = net.peer_id(users[1]).to_string();

    let sent = ha
        .send_image(&bob, &path, "look", false, None)
        .await
        .unwrap();
    let (st, ok) = ha.wait(sent.id, Status::Delivered, IMG_WAIT).await.unwrap();
    assert!(ok, "image not delivered: {st}");
    let hb = net.handle(users[1]).unwrap();
    let file = received_file(&hb, &alice, sent.id).await;
    check_upright_and_clean(&file, 800, 1200);
    let m = hb
        .history(&alice, None)
        .unwrap()
        .into_iter()
        .find(|m| m.id == sent.id)
        .unwrap();
    assert_eq!(m.text.as_deref(), Some("look"));
    let img = m.image.unwrap();
    let thumb = std::fs::read(img.thumbnail_file.expect("no thumbnail")).unwrap();
    assert!(
        image::load_from_memory(&thumb).is_ok(),
        "thumbnail does not decode"
    );
    assert!(!contains(&thumb, b"Exif\0\0"));
    // The sender's own copy is the same bytes.
    let own = ha
        .store()
        .message(&sent.id)
        .unwrap()
        .unwrap()
        .image
        .unwrap();
    assert_eq!(
        std::fs::read(own.file.unwrap()).unwrap(),
        std::fs::read(&file).unwrap()
    );

    // The same photo to a group of four.
    let members: Vec<String> = users[1..]
        .iter()
        .map(|i| net.peer_id(*i).to_string())
        .collect();
    let g = ha.group_create("photos", &members).await.unwrap();
    for i in &users[1..] {
        let h = net.handle(*i).unwrap();
        wait_for(WAIT, || async {
            h.group_list()
                .ok()
                .filter(|l| l.iter().any(|v| v.group_id == g.group_id))
        })
        .await
        .expect("a member never got the group");
    }
    let sent = ha
        .send_image(&g.group_id, &path, "for all", false, None)
        .await
        .unwrap();
    for i in &users[1..] {
        let h = net.handle(*i).unwrap();
        let file = received_file(&h, &g.group_id, sent.id).await;
        check_upright_and_clean(&file, 800, 1200);
    }
    let (st, ok) = ha.wait(sent.id, Status::Delivered, IMG_WAIT).await.unwrap();
    assert!(ok, "group image not delivered to every member: {st}");
    let receipts = ha.store().message(&sent.id).unwrap().unwrap().receipts;
    assert_eq!(receipts.len(), 3);
    assert!(
        receipts
            .values()
            .all(|s| matches!(s, Status::Delivered | Status::Read)),
        "{receipts:?}"
    );
    net.shutdown().await;
}

/// B offline: the blob and then the envelope go to B's relay; the sender goes offline too; B
/// comes back, pulls every chunk from the relay and releases it there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_offline_recipient_gets_the_image_from_its_relay() {
    init_logs();
    let s = seed();
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "p.jpg",
        &images::jpeg(&images::noisy(1000, 700, s), 90),
    );
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let (r, raddr) = add_relay(&mut net, "relay", None).await;
    let b = add_user(&mut net, "bob", &raddr).await;
    let a = add_user(&mut net, "alice", &raddr).await;
    let (bob, alice) = (net.peer_id(b), net.peer_id(a).to_string());
    let ha = net.handle(a).unwrap();
    let warm = ha.send_text(&bob.to_string(), "warm-up").await.unwrap();
    assert!(ha.wait(warm.id, Status::Delivered, WAIT).await.unwrap().1);
    net.stop(b).await.unwrap();

    let sent = ha
        .send_image(&bob.to_string(), &path, "while you were out", false, None)
        .await
        .unwrap();
    let (st, ok) = ha.wait(sent.id, Status::Sent, WAIT).await.unwrap();
    assert!(ok, "not deposited: {st}");
    let hr = net.handle(r).unwrap();
    assert!(
        hr.store().relay_blob_bytes(&bob) > 0,
        "the relay holds no blob"
    );
    let own = ha
        .store()
        .message(&sent.id)
        .unwrap()
        .unwrap()
        .image
        .unwrap();
    let expected = std::fs::read(own.file.unwrap()).unwrap();
    drop(ha);
    net.stop(a).await.unwrap();

    net.start(b).await.unwrap();
    let hb = net.handle(b).unwrap();
    let file = received_file(&hb, &alice, sent.id).await;
    assert_eq!(
        std::fs::read(&file).unwrap(),
        expected,
        "bob's copy differs"
    );
    wait_for(WAIT, || async {
        (hr.store().relay_blob_bytes(&bob) == 0).then_some(())
    })
    .await
    .expect("the relay kept the blob after bob released it");
    net.start(a).await.unwrap();
    let ha = net.handle(a).unwrap();
    let (st, ok) = ha.wait(sent.id, Status::Delivered, WAIT).await.unwrap();
    assert!(ok, "alice never saw it delivered: {st}");
    net.shutdown().await;
}

/// The receiver is killed halfway through a transfer; after its restart the fetch resumes and
/// only the chunks it did not hold are sent again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_transfer_resumes_without_refetching_good_chunks() {
    init_logs();
    let s = seed();
    let dir = tempfile::tempdir().unwrap();
    // About 3 MB, sent as is: a dozen chunks.
    let path = write(
        dir.path(),
        "big.png",
        &images::png(&images::noisy(1100, 900, s)),
    );
    let faults = Arc::new(kith_node::config::Faults::default());
    faults.limit_blob_chunks.store(true, Ordering::SeqCst);
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let f = faults.clone();
    let a = net
        .add_with("alice", Box::new(move |b| b.faults(f.clone())))
        .await
        .unwrap();
    let b = net.add("bob").await.unwrap();
    let (alice, bob) = (net.peer_id(a).to_string(), net.peer_id(b).to_string());
    let ha = net.handle(a).unwrap();
    let sent = ha.send_image(&bob, &path, "", true, None).await.unwrap();
    let blob = ha
        .store()
        .message(&sent.id)
        .unwrap()
        .unwrap()
        .image
        .unwrap()
        .blob;
    let size = ha.store().blob_meta(&blob).unwrap().unwrap().size;
    let n = kith_protocol::blob::chunk_count(size) as u32;
    assert!(n >= 8, "only {n} chunks");
    let half = n / 2;
    faults.blob_chunk_budget.store(half, Ordering::SeqCst);
    let hb = net.handle(b).unwrap();
    let have = |h: Handle| {
        (0..n)
            .filter(|i| h.store().blob_has_chunk(&blob, *i).unwrap())
            .count() as u32
    };
    wait_for(IMG_WAIT, || async {
        (have(hb.clone()) == half).then_some(())
    })
    .await
    .expect("bob never got the first half");
    // Halfway: the thumbnail that travelled inside the message is shown, the image is not.
    let partial = hb
        .history(&alice, None)
        .unwrap()
        .into_iter()
        .find(|m| m.id == sent.id)
        .expect("the message is not in bob's history while its image is fetched")
        .image
        .expect("no image entry");
    assert_eq!(partial.file, None, "an incomplete image is shown as a file");
    let thumb = partial
        .thumbnail_file
        .expect("no thumbnail before the image");
    assert!(
        image::load_from_memory(&std::fs::read(&thumb).unwrap()).is_ok(),
        "the thumbnail does not decode"
    );
    drop(hb);
    net.kill(b).await;
    assert_eq!(
        faults.blob_chunks_served.load(Ordering::SeqCst),
        half as u64
    );

    net.start(b).await.unwrap();
    faults.blob_chunks_served.store(0, Ordering::SeqCst);
    faults.limit_blob_chunks.store(false, Ordering::SeqCst);
    let hb = net.handle(b).unwrap();
    let file = received_file(&hb, &alice, sent.id).await;
    let own = ha
        .store()
        .message(&sent.id)
        .unwrap()
        .unwrap()
        .image
        .unwrap();
    assert_eq!(
        std::fs::read(&file).unwrap(),
        std::fs::read(own.file.unwrap()).unwrap()
    );
    assert_eq!(
        faults.blob_chunks_served.load(Ordering::SeqCst),
        (n - half) as u64,
        "chunks already held were fetched again"
    );
    assert!(ha.wait(sent.id, Status::Delivered, WAIT).await.unwrap().1);
    net.shutdown().await;
}

/// C09: about 0.9 MB, 1.1 MB and 12 MB arrive whole and verified; 17 MB is refused before
/// anything is stored or sent; no partial file is left on either side.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_c09_sizes_around_the_lower_layers_limits() {
    init_logs();
    let s = seed();
    let dir = tempfile::tempdir().unwrap();
    let small = write(dir.path(), "s.jpg", &images::jpeg_of_size(900_000, s));
    let mid = write(dir.path(), "m.jpg", &images::jpeg_of_size(1_100_000, s + 1));
    let big = write(
        dir.path(),
        "b.png",
        &images::png(&images::noisy(2000, 2000, s + 2)),
    );
    let huge = write(
        dir.path(),
        "h.png",
        &images::png(&images::noisy(2400, 2400, s + 3)),
    );
    let len = |p: &Path| std::fs::metadata(p).unwrap().len();
    assert!(
        (800_000..1_000_000).contains(&len(&small)),
        "{}",
        len(&small)
    );
    assert!((1_000_000..1_250_000).contains(&len(&mid)), "{}", len(&mid));
    assert!(
        (11_000_000..16_000_000).contains(&len(&big)),
        "{}",
        len(&big)
    );
    assert!(len(&huge) > 17_000_000, "{}", len(&huge));

    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let a = net.add("alice").await.unwrap();
    let b = net.add("bob").await.unwrap();
    let (alice, bob) = (net.peer_id(a).to_string(), net.peer_id(b).to_string());
    let (ha, hb) = (net.handle(a).unwrap(), net.handle(b).unwrap());

    let err = ha
        .send_image(&bob, &huge, "", false, None)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err}");
    assert!(err.to_string().contains("limited to"), "{err}");
    assert!(
        ha.history(&bob, None).unwrap().is_empty(),
        "the refused image was stored"
    );
    assert_eq!(ha.store().outbox_len(), 0);

    // Sent with --original, so what travels is the size given: about 0.9, 1.1 and 12 MB,
    // across the 1 MiB mark and far past gossipsub's and request-response's frame sizes.
    for (p, original) in [(&small, true), (&mid, true), (&big, true)] {
        let sent = ha.send_image(&bob, p, "", original, None).await.unwrap();
        let (st, ok) = ha.wait(sent.id, Status::Delivered, IMG_WAIT).await.unwrap();
        assert!(ok, "{p:?} not delivered: {st}");
        let file = received_file(&hb, &alice, sent.id).await;
        let own = ha
            .store()
            .message(&sent.id)
            .unwrap()
            .unwrap()
            .image
            .unwrap();
        let got = std::fs::read(&file).unwrap();
        assert_eq!(got, std::fs::read(own.file.unwrap()).unwrap());
        assert!(image::load_from_memory(&got).is_ok());
        if original {
            assert!(
                got.len() as u64 * 10 >= len(p) * 9,
                "--original shrank {p:?} from {} to {} bytes",
                len(p),
                got.len()
            );
        }
    }
    // Nothing partial anywhere; three whole images on each side.
    for h in [&ha, &hb] {
        let media = h.store().media_dir();
        let files: Vec<PathBuf> = files_under(&media)
            .into_iter()
            .filter(|p| !p.starts_with(media.join("thumbnails")))
            .collect();
        assert_eq!(files.len(), 3, "{files:?}");
        assert!(files
            .iter()
            .all(|f| !f.to_string_lossy().ends_with(".part")));
    }
    net.shutdown().await;
}

/// Bad input: not an image, a truncated image, a decompression bomb: clear errors, nothing
/// stored. A corrupt chunk from the sender is dropped, never written, and the image arrives
/// once a good copy is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_images_and_bad_chunks_leave_nothing_behind() {
    init_logs();
    let s = seed();
    let dir = tempfile::tempdir().unwrap();
    let good = images::jpeg(&images::noisy(900, 900, s), 90);
    let not_image = write(
        dir.path(),
        "notes.jpg",
        b"these are not the pixels you are looking for",
    );
    let truncated = write(dir.path(), "cut.jpg", &good[..good.len() / 3]);
    // A PNG header that claims 100000 x 100000 pixels.
    let mut bomb = images::png(&images::noisy(8, 8, s));
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let bomb = write(dir.path(), "bomb.png", &bomb);
    let good = write(dir.path(), "good.jpg", &good);

    let faults = Arc::new(kith_node::config::Faults::default());
    faults.limit_blob_chunks.store(true, Ordering::SeqCst);
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let f = faults.clone();
    let a = net
        .add_with("alice", Box::new(move |b| b.faults(f.clone())))
        .await
        .unwrap();
    let b = net.add("bob").await.unwrap();
    let (alice, bob) = (net.peer_id(a).to_string(), net.peer_id(b).to_string());
    let (ha, hb) = (net.handle(a).unwrap(), net.handle(b).unwrap());
    for p in [&not_image, &truncated, &bomb] {
        let err = ha.send_image(&bob, p, "", false, None).await.unwrap_err();
        assert!(matches!(err, Error::InvalidInput(_)), "{p:?}: {err}");
    }
    assert!(ha.history(&bob, None).unwrap().is_empty());
    assert!(files_under(&ha.store().media_dir()).is_empty());
    assert_eq!(ha.store().outbox_len(), 0);

    // A chunk with a bad hash: alice's stored chunk 0 is corrupted before bob asks for it.
    let mut ev = hb.subscribe();
    let sent = ha.send_image(&bob, &good, "", false, None).await.unwrap();
    let blob = ha
        .store()
        .message(&sent.id)
        .unwrap()
        .unwrap()
        .image
        .unwrap()
        .blob;
    let chunk0 = ha.store().blob_chunk(&blob, 0).unwrap().unwrap();
    let mut bad = chunk0.clone();
    bad[10] ^= 0xFF;
    ha.store().blob_put_incoming(&blob, 0, 0, &bad).unwrap();
    faults.limit_blob_chunks.store(false, Ordering::SeqCst);
    let dropped = tokio::time::timeout(WAIT, async {
        loop {
            match ev.recv().await {
                Ok(kith_node::Event::Dropped { reason, .. }) if reason.contains("blob chunk") => {
                    return reason
                }
                Ok(_) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await
    .expect("the bad chunk was not dropped");
    assert!(dropped.contains("bad blob chunk"), "{dropped}");
    assert!(
        !hb.store().blob_has_chunk(&blob, 0).unwrap(),
        "a bad chunk was written"
    );
    let m = hb.history(&alice, None).unwrap().pop().unwrap();
    assert!(
        m.image.unwrap().file.is_none(),
        "an incomplete image was shown"
    );
    assert_eq!(
        ha.store().message(&sent.id).unwrap().unwrap().status,
        Status::Sent
    );

    // The good chunk is back: the image completes.
    ha.store().blob_put_incoming(&blob, 0, 0, &chunk0).unwrap();
    let file = received_file(&hb, &alice, sent.id).await;
    assert!(image::load_from_memory(&std::fs::read(file).unwrap()).is_ok());
    // A request for a blob the node does not have gets nothing.
    let unknown = kith_protocol::blob::BlobId([7; 32]);
    assert!(ha
        .store()
        .blob_chunk_for(&unknown, 0, &net.peer_id(b))
        .unwrap()
        .is_none());
    net.shutdown().await;
}

/// C11: with a 30 s timer, 40 s later nothing of the image or its thumbnail is left in either
/// store, either media folder, or the relay — not even in sled's raw files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn case_c11_a_disappearing_image_leaves_nothing_anywhere() {
    init_logs();
    let s = seed();
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "p.jpg",
        &images::jpeg(&images::noisy(800, 600, s), 90),
    );
    let mut net = Harness::new().unwrap();
    net.add("boot").await.unwrap();
    let (r, raddr) = add_relay(&mut net, "relay", None).await;
    let b = add_user(&mut net, "bob", &raddr).await;
    let a = add_user(&mut net, "alice", &raddr).await;
    let (bob, alice) = (net.peer_id(b), net.peer_id(a).to_string());
    let ha = net.handle(a).unwrap();
    let hb = net.handle(b).unwrap();
    // A timer change is taken only from a contact (or a peer already talked to).
    hb.add_contact(&alice, Some("alice".into())).await.unwrap();
    ha.set_timer(&bob.to_string(), Some(30)).await.unwrap();
    wait_for(WAIT, || async {
        (hb.store()
            .conv_timer(&kith_node::store::Conv::Direct(net.peer_id(a)))
            .ok()
            .flatten()
            == Some(30))
        .then_some(())
    })
    .await
    .expect("bob never applied the timer");
    drop(hb);
    net.stop(b).await.unwrap();

    let sent = ha
        .send_image(&bob.to_string(), &path, "gone soon", false, None)
        .await
        .unwrap();
    assert!(ha.wait(sent.id, Status::Sent, WAIT).await.unwrap().1);
    let hr = net.handle(r).unwrap();
    assert!(hr.store().relay_blob_bytes(&bob) > 0);
    let own = ha
        .store()
        .readable(ha.store().message(&sent.id).unwrap().unwrap())
        .unwrap();
    let own_img = own.image.unwrap();
    let picture = std::fs::read(own_img.file.clone().unwrap()).unwrap();
    let thumbnail = own_img.reference.unwrap().thumbnail;
    net.start(b).await.unwrap();
    let hb = net.handle(b).unwrap();
    received_file(&hb, &alice, sent.id).await;
    assert!(ha.wait(sent.id, Status::Delivered, WAIT).await.unwrap().1);

    net.clock.advance_ms(40_000);
    for h in [&ha, &hb] {
        wait_for(WAIT, || async {
            (h.store().message(&sent.id).ok().flatten().is_none()
                && files_under(&h.store().media_dir()).is_empty())
            .then_some(())
        })
        .await
        .expect("the image outlived its timer");
    }
    wait_for(WAIT, || async {
        (hr.store().relay_blob_bytes(&bob) == 0).then_some(())
    })
    .await
    .expect("the relay kept the blob");
    // Look everywhere, raw bytes included: no piece of the picture, no thumbnail.
    let probe = &picture[picture.len() / 2..picture.len() / 2 + 48];
    let tprobe = &thumbnail[thumbnail.len() / 2..thumbnail.len() / 2 + 32];
    for i in [a, b, r] {
        let home = net.home(i).to_path_buf();
        for f in files_under(&home) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            assert!(!contains(&bytes, probe), "picture bytes left in {f:?}");
            assert!(!contains(&bytes, tprobe), "thumbnail bytes left in {f:?}");
        }
    }
    net.shutdown().await;
}
