//! OCI and Docker image manifests as overlaybd images use them: a manifest
//! lists the layer blobs bottom first, each annotated as an overlaybd blob;
//! an index (or Docker manifest list) names one manifest per platform.
//!
//! The structs serialize in the field order of the OCI Go types (what the
//! overlaybd convertor writes), with annotations sorted, so that the same
//! image always gives the same manifest bytes and digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::source::digest::Digest;

/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker image manifest (schema 2).
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list.
pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI uncompressed layer: what overlaybd layer blobs are announced as.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// Docker uncompressed layer.
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The annotation naming an overlaybd layer blob's digest.
pub const ANN_BLOB_DIGEST: &str = "containerd.io/snapshot/overlaybd/blob-digest";
/// The annotation giving an overlaybd layer blob's size.
pub const ANN_BLOB_SIZE: &str = "containerd.io/snapshot/overlaybd/blob-size";
/// The annotation giving the overlaybd blob format version.
pub const ANN_VERSION: &str = "containerd.io/snapshot/overlaybd/version";
/// The version obd writes (the convertor's).
pub const OVERLAYBD_VERSION: &str = "0.1.0";
/// turboOCI layers (an index over an OCI tar layer): recognised, not read.
const ANN_TURBO: [&str; 2] = [
    "containerd.io/snapshot/overlaybd/turbo-oci/target-digest",
    "containerd.io/snapshot/overlaybd/fastoci/target-digest",
];
/// The OCI layout annotation naming an image's tag.
pub const ANN_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// The largest manifest, index or config obd reads (the distribution
/// spec's recommended minimum that registries accept).
pub const MAX_MANIFEST: u64 = 4 << 20;
/// The most layers an image may list.
pub const MAX_LAYERS: usize = 256;
/// The most manifests an index may list.
const MAX_INDEX_ENTRIES: usize = 4096;

/// A content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The media type.
    #[serde(default)]
    pub media_type: String,
    /// The content digest, as written (checked by [`Descriptor::digest`]).
    pub digest: String,
    /// The size in bytes.
    pub size: u64,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The platform (index entries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// The parsed digest.
    ///
    /// # Errors
    /// Not a sha256 digest.
    pub fn digest(&self) -> Result<Digest> {
        Digest::parse(&self.digest)
    }
}

/// An index entry's platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `amd64`, `arm64`, ...
    pub architecture: String,
    /// `linux`, ...
    pub os: String,
    /// `v8`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's media type.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// The image config.
    pub config: Descriptor,
    /// The layers, bottom first.
    pub layers: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image index or Docker manifest list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's media type.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    /// One manifest per platform (or per tag, in an OCI layout).
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An image config, as obd writes one: the platform and the layers'
/// digests as `rootfs.diff_ids` (what the convertor writes for overlaybd
/// images).
#[derive(Debug, Clone, Serialize)]
pub struct Config {
    /// `amd64`, ...
    pub architecture: String,
    /// `linux`.
    pub os: String,
    /// The runtime config (empty).
    pub config: BTreeMap<String, String>,
    /// The layers.
    pub rootfs: RootFs,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, Serialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The layers' digests, bottom first.
    pub diff_ids: Vec<String>,
}

/// A manifest document as fetched: a manifest or an index.
#[derive(Debug, Clone)]
pub enum Document {
    /// An image manifest.
    Manifest(Manifest),
    /// An index of manifests.
    Index(Index),
}

/// One overlaybd layer blob an image names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerBlob {
    /// Its digest.
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
}

/// Parses a manifest or an index; `media_type` is what the registry said
/// (Content-Type) or the descriptor that pointed here, if anything.
///
/// # Errors
/// Not JSON, not a manifest or index, too many entries.
pub fn parse_document(bytes: &[u8], media_type: Option<&str>) -> Result<Document> {
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::invalid("image manifest", format!("not JSON: {e}")))?;
    let declared = v
        .get("mediaType")
        .and_then(|m| m.as_str())
        .or(media_type)
        .unwrap_or("");
    let is_index = matches!(declared, OCI_INDEX | DOCKER_LIST)
        || (v.get("manifests").is_some() && v.get("layers").is_none());
    if v.get("schemaVersion").and_then(serde_json::Value::as_u64) == Some(1) {
        return Err(Error::invalid(
            "image manifest",
            "a Docker schema 1 manifest (obd reads schema 2 and OCI manifests)",
        ));
    }
    if is_index {
        let ix: Index =
            serde_json::from_value(v).map_err(|e| Error::invalid("image index", e.to_string()))?;
        if ix.manifests.len() > MAX_INDEX_ENTRIES {
            return Err(Error::invalid(
                "image index",
                format!(
                    "{} manifests (at most {MAX_INDEX_ENTRIES})",
                    ix.manifests.len()
                ),
            ));
        }
        return Ok(Document::Index(ix));
    }
    let m: Manifest =
        serde_json::from_value(v).map_err(|e| Error::invalid("image manifest", e.to_string()))?;
    Ok(Document::Manifest(m))
}

/// The host's platform in OCI's words.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        other => other,
    };
    ("linux", arch)
}

/// The index entry for the host's platform.
///
/// # Errors
/// No entry for it (the error lists the platforms there are).
pub fn pick_platform(ix: &Index) -> Result<&Descriptor> {
    let (os, arch) = host_platform();
    if let Some(d) = ix.manifests.iter().find(|d| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == os && p.architecture == arch)
    }) {
        return Ok(d);
    }
    // An index without platforms and a single entry: that one.
    if ix.manifests.len() == 1 && ix.manifests[0].platform.is_none() {
        return Ok(&ix.manifests[0]);
    }
    let there: Vec<String> = ix
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        .map(|p| format!("{}/{}", p.os, p.architecture))
        .collect();
    Err(Error::invalid(
        "image index",
        format!(
            "no manifest for {os}/{arch} (it has: {})",
            if there.is_empty() {
                "none with a platform".to_string()
            } else {
                there.join(", ")
            }
        ),
    ))
}

/// The overlaybd layer blobs of a manifest, bottom first.
///
/// # Errors
/// A layer that is not an overlaybd blob (the message says to convert the
/// image), a turboOCI layer, bad digests, annotations that disagree with
/// the descriptor, too many layers.
pub fn overlaybd_layers(m: &Manifest) -> Result<Vec<LayerBlob>> {
    if m.layers.is_empty() {
        return Err(Error::invalid("image manifest", "no layers"));
    }
    if m.layers.len() > MAX_LAYERS {
        return Err(Error::invalid(
            "image manifest",
            format!("{} layers (at most {MAX_LAYERS})", m.layers.len()),
        ));
    }
    let mut out = Vec::with_capacity(m.layers.len());
    for (i, l) in m.layers.iter().enumerate() {
        let what =
            |detail: String| Error::invalid("image manifest", format!("layer {i}: {detail}"));
        if ANN_TURBO.iter().any(|k| l.annotations.contains_key(*k)) {
            return Err(what(
                "a turboOCI layer (an index over an OCI tar layer), which obd does not read".into(),
            ));
        }
        let Some(blob_digest) = l.annotations.get(ANN_BLOB_DIGEST) else {
            return Err(Error::invalid(
                "image manifest",
                format!(
                    "layer {i} ({}) is not an overlaybd blob: an OCI image that is not in overlaybd format; convert it first",
                    if l.media_type.is_empty() { "no media type" } else { &l.media_type }
                ),
            ));
        };
        if !matches!(l.media_type.as_str(), OCI_LAYER | DOCKER_LAYER) {
            return Err(what(format!(
                "media type {:?} (an overlaybd blob is {OCI_LAYER} or {DOCKER_LAYER})",
                l.media_type
            )));
        }
        let digest = l.digest().map_err(|e| what(e.to_string()))?;
        if blob_digest != &l.digest {
            return Err(what(format!(
                "the descriptor's digest {} and its {ANN_BLOB_DIGEST} {blob_digest} differ",
                l.digest
            )));
        }
        if let Some(s) = l.annotations.get(ANN_BLOB_SIZE) {
            if s.parse::<u64>().ok() != Some(l.size) {
                return Err(what(format!(
                    "the descriptor's size {} and its {ANN_BLOB_SIZE} {s:?} differ",
                    l.size
                )));
            }
        }
        if l.size == 0 {
            return Err(what("an empty blob".into()));
        }
        out.push(LayerBlob {
            digest,
            size: l.size,
        });
    }
    Ok(out)
}

/// A layer descriptor as obd writes one.
pub fn layer_descriptor(blob: LayerBlob, media_type: &str) -> Descriptor {
    let mut annotations = BTreeMap::new();
    annotations.insert(ANN_BLOB_DIGEST.to_string(), blob.digest.to_string());
    annotations.insert(ANN_BLOB_SIZE.to_string(), blob.size.to_string());
    annotations.insert(ANN_VERSION.to_string(), OVERLAYBD_VERSION.to_string());
    Descriptor {
        media_type: media_type.to_string(),
        digest: blob.digest.to_string(),
        size: blob.size,
        annotations,
        platform: None,
    }
}

/// The config and manifest bytes obd writes for `layers` (OCI media types).
pub fn build_image(layers: &[LayerBlob]) -> (Vec<u8>, Vec<u8>) {
    let (os, arch) = host_platform();
    let config = Config {
        architecture: arch.to_string(),
        os: os.to_string(),
        config: BTreeMap::new(),
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids: layers.iter().map(|l| l.digest.to_string()).collect(),
        },
    };
    let config_bytes = serde_json::to_vec(&config).unwrap_or_default();
    let manifest = Manifest {
        schema_version: 2,
        media_type: OCI_MANIFEST.into(),
        config: Descriptor {
            media_type: OCI_CONFIG.into(),
            digest: Digest::of(&config_bytes).to_string(),
            size: config_bytes.len() as u64,
            annotations: BTreeMap::new(),
            platform: None,
        },
        layers: layers
            .iter()
            .map(|l| layer_descriptor(*l, OCI_LAYER))
            .collect(),
        annotations: BTreeMap::new(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap_or_default();
    (config_bytes, manifest_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A manifest the overlaybd convertor wrote (accelerated-container-image
    /// ci/uconv_reproduce/redis/manifest.json, first two layers).
    const CONVERTOR: &str = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:033843c467845ea16b10160341f001495b1f8c7ce8587c6cf02fac96a14c8ba3","size":9164},"layers":[{"mediaType":"application/vnd.docker.image.rootfs.diff.tar","digest":"sha256:a640fc493a1522f8e40b74dc77386011d1d10783d81750b8135e127b703d5d93","size":46912000,"annotations":{"containerd.io/snapshot/overlaybd/blob-digest":"sha256:a640fc493a1522f8e40b74dc77386011d1d10783d81750b8135e127b703d5d93","containerd.io/snapshot/overlaybd/blob-size":"46912000","containerd.io/snapshot/overlaybd/version":"0.1.0"}},{"mediaType":"application/vnd.docker.image.rootfs.diff.tar","digest":"sha256:d5fdb13be1b316474cbf894ba53a4da8b93239216fb400f1cdef70e57928a7cf","size":623616,"annotations":{"containerd.io/snapshot/overlaybd/blob-digest":"sha256:d5fdb13be1b316474cbf894ba53a4da8b93239216fb400f1cdef70e57928a7cf","containerd.io/snapshot/overlaybd/blob-size":"623616","containerd.io/snapshot/overlaybd/version":"0.1.0"}}]}"#;

    #[test]
    fn reads_the_convertors_manifest_and_writes_its_shape() {
        let Document::Manifest(m) = parse_document(CONVERTOR.as_bytes(), None).unwrap() else {
            panic!("not a manifest")
        };
        let layers = overlaybd_layers(&m).unwrap();
        assert_eq!(layers.len(), 2);
        assert_eq!(layers[1].size, 623616);
        // A layer descriptor serializes as the convertor's does.
        let d = layer_descriptor(layers[1], DOCKER_LAYER);
        let want = r#"{"mediaType":"application/vnd.docker.image.rootfs.diff.tar","digest":"sha256:d5fdb13be1b316474cbf894ba53a4da8b93239216fb400f1cdef70e57928a7cf","size":623616,"annotations":{"containerd.io/snapshot/overlaybd/blob-digest":"sha256:d5fdb13be1b316474cbf894ba53a4da8b93239216fb400f1cdef70e57928a7cf","containerd.io/snapshot/overlaybd/blob-size":"623616","containerd.io/snapshot/overlaybd/version":"0.1.0"}}"#;
        assert_eq!(serde_json::to_string(&d).unwrap(), want);
        assert!(CONVERTOR.contains(want));
    }

    #[test]
    fn plain_oci_images_are_refused_with_advice() {
        let m = CONVERTOR.replace("containerd.io/snapshot/overlaybd/blob-digest", "x");
        let Document::Manifest(m) = parse_document(m.as_bytes(), None).unwrap() else {
            panic!()
        };
        let e = overlaybd_layers(&m).unwrap_err().to_string();
        assert!(e.contains("convert it first"), "{e}");
        let m = CONVERTOR.replacen("\"size\":623616", "\"size\":623617", 1);
        let Document::Manifest(m) = parse_document(m.as_bytes(), None).unwrap() else {
            panic!()
        };
        assert!(overlaybd_layers(&m)
            .unwrap_err()
            .to_string()
            .contains("differ"));
    }

    #[test]
    fn index_picks_the_host_platform() {
        let (os, arch) = host_platform();
        let d = "sha256:".to_string() + &"1".repeat(64);
        let ix = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":1,"platform":{{"architecture":"s390x","os":"linux"}}}},{{"mediaType":"{OCI_MANIFEST}","digest":"{d}","size":2,"platform":{{"architecture":"{arch}","os":"{os}"}}}}]}}"#
        );
        let Document::Index(ix) = parse_document(ix.as_bytes(), None).unwrap() else {
            panic!()
        };
        assert_eq!(pick_platform(&ix).unwrap().size, 2);
    }

    #[test]
    fn built_images_are_reproducible() {
        let l = LayerBlob {
            digest: Digest::of(b"x"),
            size: 1,
        };
        assert_eq!(build_image(&[l]), build_image(&[l]));
        let (c, m) = build_image(&[l]);
        let Document::Manifest(m) = parse_document(&m, None).unwrap() else {
            panic!()
        };
        assert_eq!(m.config.digest, Digest::of(&c).to_string());
        assert_eq!(overlaybd_layers(&m).unwrap(), vec![l]);
    }
}
