//! `export`: the stored records of a stream as JSON lines.

use crate::commands::open_synced;
use crate::failure::{config_failure, Failure};
use anyhow::Result;
use connector_engine::export::ExportOptions;
use connector_sandbox::secrets::Environment;
use std::io::{ErrorKind, Write};
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
    let mut output = Output::new(out);
    let mut buffered = std::io::BufWriter::new(&mut output);
    let exported = connector_engine::export::export(
        &store,
        &p.info,
        &connection,
        stream,
        options,
        &mut buffered,
    )
    .map_err(|e| config_failure(format!("{e:#}")));
    let flushed = exported.and_then(|_| Ok(buffered.flush()?));
    drop(buffered);
    flushed.map_err(|e| output.explain(e))
}

/// What the operator reads when the program reading stdout closed it
/// before the last record (`| head`); the Node host says the same.
pub const READER_GONE: &str = "the program reading stdout closed it before every record was written; send the records to a file or to a program that reads them all";

/// The command's output, remembering how writing to it first failed: a
/// broken pipe there is the reader gone, while one met anywhere else (a
/// PostgreSQL server's socket) is not.
struct Output<'a> {
    out: &'a mut dyn Write,
    failed: Option<std::io::Error>,
}

impl<'a> Output<'a> {
    fn new(out: &'a mut dyn Write) -> Self {
        Output { out, failed: None }
    }

    /// `error`, the export's, as a [`Failure`] with exit 1 when writing
    /// the output failed ([`READER_GONE`] when its reader went away); else
    /// unchanged.
    fn explain(&self, error: anyhow::Error) -> anyhow::Error {
        let message = match &self.failed {
            None => return error,
            Some(e) if e.kind() == ErrorKind::BrokenPipe => READER_GONE.to_string(),
            Some(e) => format!(
                "writing the records to stdout failed ({e}); free space where stdout goes, or send the records elsewhere"
            ),
        };
        Failure {
            exit_code: 1,
            message,
        }
        .into()
    }

    /// `result`, its error remembered if it is the first.
    fn noted<T>(&mut self, result: std::io::Result<T>) -> std::io::Result<T> {
        if let Err(e) = &result {
            if self.failed.is_none() {
                self.failed = Some(std::io::Error::new(e.kind(), e.to_string()));
            }
        }
        result
    }
}

impl Write for Output<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let result = self.out.write(bytes);
        self.noted(result)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        let result = self.out.flush();
        self.noted(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer whose every write fails with `kind`.
    struct Failing(ErrorKind);

    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(self.0.into())
        }
    }

    fn exit_code(error: &anyhow::Error) -> Option<u8> {
        error.downcast_ref::<Failure>().map(|f| f.exit_code)
    }

    #[test]
    fn a_failed_output_is_exit_1_and_only_its_broken_pipe_is_the_reader_gone() {
        let mut closed = Failing(ErrorKind::BrokenPipe);
        let mut output = Output::new(&mut closed);
        let error = anyhow::Error::from(output.write(b"{}\n").unwrap_err());
        let explained = output.explain(error);
        let failure = explained.downcast_ref::<Failure>().expect("a Failure");
        assert_eq!(
            (failure.exit_code, failure.message.as_str()),
            (1, READER_GONE)
        );
        // A full disk behind stdout is not the reader gone, nor a
        // configuration problem.
        let mut full = Failing(ErrorKind::StorageFull);
        let mut output = Output::new(&mut full);
        let error = config_failure(format!("{:#}", output.flush().unwrap_err()));
        let explained = output.explain(error);
        let failure = explained.downcast_ref::<Failure>().expect("a Failure");
        assert_eq!(failure.exit_code, 1);
        assert!(
            failure
                .message
                .starts_with("writing the records to stdout failed (no storage space)"),
            "{}",
            failure.message
        );
        // Nor is a broken pipe met elsewhere (a database's socket) while
        // the output took every byte.
        let mut taken = Vec::new();
        let mut output = Output::new(&mut taken);
        output.write_all(b"{}\n").unwrap();
        let elsewhere = anyhow::Error::from(std::io::Error::from(ErrorKind::BrokenPipe));
        let unchanged = output.explain(config_failure(format!("{elsewhere:#}")));
        assert_eq!(exit_code(&unchanged), Some(2));
    }
}
