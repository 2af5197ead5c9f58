//! Writing files so that a reader never sees half of one.

#[cfg(not(target_arch = "wasm32"))]
use crate::error::{Error, Result};

/// Write `files` (`(name, contents)`) into `dir`, creating it if needed, in order, each through a
/// temporary name and a rename, so a reader never sees half a file.
#[cfg(not(target_arch = "wasm32"))]
pub fn write_files_atomically<N: AsRef<str>>(
    dir: &std::path::Path,
    files: impl IntoIterator<Item = (N, Vec<u8>)>,
) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|error| Error::io(dir, error))?;
    for (name, contents) in files {
        let name = name.as_ref();
        let path = dir.join(name);
        let temporary = dir.join(format!(".{name}.partial"));
        std::fs::write(&temporary, &contents).map_err(|error| Error::io(&temporary, error))?;
        std::fs::rename(&temporary, &path).map_err(|error| Error::io(&path, error))?;
    }
    Ok(())
}
