//! Writers: byte-exact against the reference fixtures, and round trips.

use obd::format::lsmt::raw::SECTOR_SIZE;
use obd::format::lsmt::writer::{LayerMeta, Writer};
use obd::format::lsmt::Layer;
use obd::uuid::Uuid;

use crate::util::*;

fn commit(layer: &Layer, uuid: &str, parent: &str, msg: &str) -> Vec<u8> {
    let meta = LayerMeta {
        virtual_size: layer.header.virtual_size,
        uuid: Uuid::parse(uuid).unwrap(),
        parent_uuid: Uuid::parse(parent).unwrap(),
        user_tag: msg.as_bytes().to_vec(),
    };
    let mut w = Writer::new(Vec::new(), meta).unwrap();
    for s in &layer.segments {
        if s.zeroed {
            w.push_zeroed(s.offset, s.length, 0).unwrap();
        } else {
            let mut b = vec![0u8; s.length as usize * 512];
            layer
                .data
                .read_exact_at(&mut b, s.moffset * SECTOR_SIZE)
                .unwrap();
            w.push_data(s.offset, &b, 0).unwrap();
        }
    }
    w.finish().unwrap().0
}

#[test]
fn writer_reproduces_reference_commits() {
    let open_rw = |d: &str, i: &str| {
        Layer::open_rw(
            std::fs::File::open(fx(d)).unwrap(),
            std::fs::File::open(fx(i)).unwrap(),
        )
        .unwrap()
    };
    let l1 = open_rw("L1.data", "L1.index");
    let got = commit(
        &l1,
        "0000002a-0000-4000-8000-000000000001",
        "0000002a-0000-4000-8000-000000000000",
        "",
    );
    assert_eq!(sha256(&got), sha256_file(&fx("L1.commit")));
    let l2 = open_rw("L2.data", "L2.index");
    let got = commit(
        &l2,
        "0000002a-0000-4000-8000-000000000002",
        "0000002a-0000-4000-8000-000000000001",
        "",
    );
    assert_eq!(sha256(&got), sha256_file(&fx("L2.commit")));
    let got = commit(
        &l2,
        "0000002a-0000-4000-8000-000000000002",
        "0000002a-0000-4000-8000-000000000001",
        "fixture-commit-message",
    );
    assert_eq!(sha256(&got), sha256_file(&fx("L2.msg.commit")));
    let sealed = Layer::open_ro(std::sync::Arc::new(
        obd::io::FileAt::open(&fx("L1.sealed")).unwrap(),
    ))
    .unwrap();
    let got = commit(
        &sealed,
        "0000002a-0000-4000-8000-000000000001",
        "0000002a-0000-4000-8000-000000000000",
        "",
    );
    assert_eq!(sha256(&got), sha256_file(&fx("L1.commit")));
}

#[test]
fn tar_wrapper_reproduces_the_fixtures() {
    for name in [
        "L0.lz4.tar",
        "L1.zstd.tar",
        "L2.lz4-bs64.tar",
        "base.zstd-bs16.tar",
    ] {
        let file = std::fs::read(fx(name)).unwrap();
        let p = obd::format::tar::detect(&file).unwrap().unwrap();
        assert_eq!(p.offset, 1536, "{name}");
        let payload = &file[p.offset as usize..(p.offset + p.size) as usize];
        let wrapped = obd::format::tar::wrap(payload);
        assert_eq!(sha256(&wrapped), sha256_file(&fx(name)), "{name}");
    }
}

#[test]
fn zz_probe_lz4() {
    use obd::format::zfile::{Writer, WriterOptions};
    let raw = std::fs::read(fx("base.raw")).unwrap();
    let mut w = Writer::new(Vec::new(), WriterOptions::default()).unwrap();
    w.push(&raw).unwrap();
    let out = w.finish().unwrap().inner;
    let refz = std::fs::read(fx("base.lz4.zfile")).unwrap();
    let z = obd::format::zfile::ZFile::open(refz.clone()).unwrap();
    let mine = obd::format::zfile::ZFile::open(out.clone()).unwrap();
    let mut diff = 0;
    for i in 0..z.blocks() {
        let a = &refz[z.block_range(i).start as usize..z.block_range(i).end as usize];
        let b = &out[mine.block_range(i).start as usize..mine.block_range(i).end as usize];
        if a != b { diff += 1; }
    }
    eprintln!("lz4 blocks differing: {diff} of {}; sizes {} vs {}", z.blocks(), out.len(), refz.len());
}
