#[test]
fn rootfs_builds() {
    netbridge_tests::container::RootfsCache::from_env()
        .ensure()
        .unwrap();
}
