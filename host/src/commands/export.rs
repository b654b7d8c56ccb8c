//! `export`: the stored records of a stream as JSON lines.

use crate::commands::open_synced;
use crate::failure::{config_failure, Failure};
use anyhow::Result;
use connector_engine::export::ExportOptions;
use connector_sandbox::secrets::Environment;
use std::io::Write;
use std::path::Path;

/// Writes the stored records of `stream` to `out`.
pub async fn export(
    path: &Path,
    env: &dyn Environment,
    stream: &str,
    options: ExportOptions,
    out: &mut dyn Write,
) -> Result<()> {
    let (p, store, connection) = open_synced(path, env).await?;
    let mut buffered = std::io::BufWriter::new(out);
    connector_engine::export::export(&store, &p.info, &connection, stream, options, &mut buffered)
        .map_err(|e| unless_reader_gone(e, |e| config_failure(format!("{e:#}"))))?;
    buffered
        .flush()
        .map_err(|e| unless_reader_gone(e.into(), |e| e))?;
    Ok(())
}

/// What the operator reads when the program reading stdout closed it
/// before the last record (`| head`); the Node host says the same.
pub const READER_GONE: &str = "the program reading stdout closed it before every record was written; send the records to a file or to a program that reads them all";

/// `error` as a [`Failure`] with exit 1 and [`READER_GONE`] when it is a
/// broken pipe, else `otherwise(error)`.
fn unless_reader_gone(
    error: anyhow::Error,
    otherwise: impl FnOnce(anyhow::Error) -> anyhow::Error,
) -> anyhow::Error {
    let broken_pipe = error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if !broken_pipe {
        return otherwise(error);
    }
    Failure {
        exit_code: 1,
        message: READER_GONE.to_string(),
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_is_the_reader_gone_with_exit_1_and_anything_else_is_left_alone() {
        let pipe = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
        let gone = unless_reader_gone(anyhow::Error::from(pipe).context("writing"), |e| e);
        let failure = gone.downcast_ref::<Failure>().expect("a Failure");
        assert_eq!(
            (failure.exit_code, failure.message.as_str()),
            (1, READER_GONE)
        );
        // The control: another error goes to `otherwise`.
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let other = unless_reader_gone(full.into(), |e| config_failure(format!("{e:#}")));
        assert_eq!(other.downcast_ref::<Failure>().unwrap().exit_code, 2);
    }
}
