//! A throwaway PKI made with the `openssl` CLI for the TLS tests: a CA, a server
//! certificate for DNS:localhost and IP:127.0.0.1, a client certificate the CA signed, and a
//! client certificate signed by another CA (which a mutual-TLS server must refuse). EC
//! P-256 keys, valid one day, in a temporary directory removed on drop.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub struct Pki {
    pub dir: tempfile::TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// A client identity from a CA the server does not trust.
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("openssl is required for the TLS tests: {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const EC: [&str; 5] = [
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
];

fn ca(dir: &Path, name: &str) {
    let mut a = vec!["req", "-x509"];
    a.extend(EC);
    let subj = format!("/CN=bursar test {name}");
    let key = format!("{name}.key");
    let pem = format!("{name}.pem");
    a.extend(["-subj", &subj, "-days", "1", "-keyout", &key, "-out", &pem]);
    openssl(dir, &a);
}

fn leaf(dir: &Path, ca_name: &str, name: &str, cn: &str, ext: &str) {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let mut a = vec!["req"];
    a.extend(EC);
    let subj = format!("/CN={cn}");
    a.extend(["-subj", &subj, "-keyout", &key, "-out", &csr]);
    openssl(dir, &a);
    let extfile = format!("{name}.ext");
    std::fs::write(dir.join(&extfile), ext).unwrap();
    let (ca_pem, ca_key, out) = (
        format!("{ca_name}.pem"),
        format!("{ca_name}.key"),
        format!("{name}.pem"),
    );
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca_pem,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &extfile,
            "-out",
            &out,
        ],
    );
}

impl Pki {
    pub fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        ca(d, "ca");
        ca(d, "rogue-ca");
        leaf(
            d,
            "ca",
            "server",
            "localhost",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n\
             basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\n",
        );
        let client_ext = "basicConstraints=critical,CA:FALSE\n\
             keyUsage=critical,digitalSignature\n\
             extendedKeyUsage=clientAuth\n";
        leaf(d, "ca", "client", "bursar-cli", client_ext);
        leaf(d, "rogue-ca", "rogue", "intruder", client_ext);
        Pki {
            ca: d.join("ca.pem"),
            server_cert: d.join("server.pem"),
            server_key: d.join("server.key"),
            client_cert: d.join("client.pem"),
            client_key: d.join("client.key"),
            rogue_cert: d.join("rogue.pem"),
            rogue_key: d.join("rogue.key"),
            dir,
        }
    }

    pub fn read(p: &Path) -> Vec<u8> {
        std::fs::read(p).unwrap()
    }
}
