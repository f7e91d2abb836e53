//! Printing to stdout that returns the write's error instead of panicking as `println!`
//! does. `nightshift ls | head` closes stdout early: the next write then fails with
//! [`std::io::ErrorKind::BrokenPipe`], the command returns that error with `?`, and `main`
//! ends quietly with exit 0 on that kind of error (as ripgrep does). Nothing looks at panic
//! messages.

/// `println!` that returns `std::io::Result<()>`.
macro_rules! outln {
    () => {
        std::io::Write::write_all(&mut std::io::stdout(), b"\n")
    };
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(
            &mut std::io::stdout(),
            format_args!("{}\n", format_args!($($arg)*)),
        )
    };
}

/// `print!` that returns `std::io::Result<()>`.
macro_rules! out {
    ($($arg:tt)*) => {
        std::io::Write::write_fmt(&mut std::io::stdout(), format_args!($($arg)*))
    };
}

pub(crate) use {out, outln};
