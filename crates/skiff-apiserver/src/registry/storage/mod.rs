//! `storage.k8s.io/v1`: StorageClasses, CSI drivers and nodes, storage capacities and
//! volume attachments. Stored, defaulted and validated as upstream's; the storage
//! controllers and CSI that act on them come with persistent volumes (a later issue).

pub mod csidriver;
pub mod csinode;
pub mod csistoragecapacity;
pub mod storageclass;
pub mod volumeattachment;
