//! A container's terminal. With `process.terminal`, the runtime makes a pseudo-terminal for
//! the container and sends its master end over a unix socket (`--console-socket`) as an
//! `SCM_RIGHTS` message; the container monitor receives it and keeps it for the container's
//! life (its output to the log, attach's input and resizes to it).

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// A socket waiting for the runtime's terminal; removed when dropped.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Binds a socket at `path` (short: unix socket paths end at 107 bytes).
    pub fn bind(path: &Path) -> io::Result<ConsoleSocket> {
        let _ = std::fs::remove_file(path);
        Ok(ConsoleSocket {
            listener: UnixListener::bind(path)?,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The terminal the runtime sent. Call after `run --detach` returned: the kernel holds the
    /// runtime's connection and message until then.
    pub fn receive(&self) -> io::Result<File> {
        self.listener.set_nonblocking(true)?;
        let (stream, _) = self
            .listener
            .accept()
            .map_err(|e| io::Error::new(e.kind(), format!("the runtime sent no terminal: {e}")))?;
        stream.set_nonblocking(false)?;
        receive_fd(stream.as_raw_fd()).map(File::from)
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One descriptor passed over a unix socket.
fn receive_fd(socket: i32) -> io::Result<OwnedFd> {
    // The runtime sends the terminal's name as the message's bytes.
    let mut data = [0u8; 4096];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // Room for one descriptor's control message, aligned as cmsghdr wants.
    let mut control = [0u64; 8];
    // SAFETY: a zeroed msghdr is valid; its pointers are set to live buffers below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: the socket is open and msg points at buffers that outlive the call.
    let n = unsafe { libc::recvmsg(socket, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR/CMSG_DATA stay inside `control`.
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&msg);
        if header.is_null()
            || (*header).cmsg_level != libc::SOL_SOCKET
            || (*header).cmsg_type != libc::SCM_RIGHTS
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the runtime's message carried no terminal",
            ));
        }
        let fd = std::ptr::read_unaligned(libc::CMSG_DATA(header) as *const i32);
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// Sets a terminal's size.
pub fn resize(terminal: &File, width: u16, height: u16) {
    let size = rustix::termios::Winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let _ = rustix::termios::tcsetwinsize(terminal, size);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;

    /// Sends `fd` the way runc does: one SCM_RIGHTS message with a name as data.
    fn send_fd(stream: &UnixStream, fd: i32) {
        let name = b"/dev/pts/9";
        let mut iov = libc::iovec {
            iov_base: name.as_ptr() as *mut _,
            iov_len: name.len(),
        };
        let mut control = [0u64; 8];
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = unsafe { libc::CMSG_SPACE(4) } as usize;
        unsafe {
            let header = libc::CMSG_FIRSTHDR(&msg);
            (*header).cmsg_level = libc::SOL_SOCKET;
            (*header).cmsg_type = libc::SCM_RIGHTS;
            (*header).cmsg_len = libc::CMSG_LEN(4) as usize;
            std::ptr::write_unaligned(libc::CMSG_DATA(header) as *mut i32, fd);
            assert!(libc::sendmsg(stream.as_raw_fd(), &msg, 0) > 0);
        }
    }

    #[test]
    fn a_descriptor_sent_before_the_accept_arrives() {
        let dir = tempfile::tempdir().unwrap();
        let socket = ConsoleSocket::bind(&dir.path().join("c.sock")).unwrap();
        // As runc does during create: connect and send, before anyone accepts.
        let (mut keep, passed) = UnixStream::pair().unwrap();
        let client = UnixStream::connect(socket.path()).unwrap();
        send_fd(&client, passed.as_raw_fd());
        drop(passed);
        let mut received = socket.receive().unwrap();
        keep.write_all(b"through the passed descriptor").unwrap();
        let mut buf = [0u8; 29];
        received.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"through the passed descriptor");
        let path = socket.path().to_path_buf();
        drop(socket);
        assert!(!path.exists());
    }

    #[test]
    fn no_connection_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let socket = ConsoleSocket::bind(&dir.path().join("c.sock")).unwrap();
        let err = socket.receive().unwrap_err();
        assert!(err.to_string().contains("sent no terminal"), "{err}");
    }
}
