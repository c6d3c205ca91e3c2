//! What one connection may cost (`[server.limits]`): checked before anything is
//! joined or sent, so a refused request changes nothing.

use std::time::Instant;

use crate::config::SocketLimits;

/// Which limit a request went over (the `limit` label in `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `publishes_per_second`.
    PublishRate,
    /// `rooms_per_socket`.
    RoomsPerSocket,
    /// `rooms_per_join`.
    RoomsPerJoin,
    /// `room_name_bytes`.
    RoomName,
    /// `max_publish_bytes`.
    PublishSize,
}

impl Limit {
    /// Every limit, in the order of `/metrics`.
    pub const ALL: [Limit; 5] = [
        Limit::PublishRate,
        Limit::RoomsPerSocket,
        Limit::RoomsPerJoin,
        Limit::RoomName,
        Limit::PublishSize,
    ];

    /// The config key's name, also the metrics label.
    pub fn name(self) -> &'static str {
        match self {
            Limit::PublishRate => "publishes_per_second",
            Limit::RoomsPerSocket => "rooms_per_socket",
            Limit::RoomsPerJoin => "rooms_per_join",
            Limit::RoomName => "room_name_bytes",
            Limit::PublishSize => "max_publish_bytes",
        }
    }
}

/// A request over a limit: which, and the message of the error ack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Over {
    /// The limit.
    pub limit: Limit,
    /// What the client is told.
    pub message: String,
}

fn over(limit: Limit, message: String) -> Result<(), Over> {
    Err(Over { limit, message })
}

/// Checks the room names of one `join` or `leave`.
pub fn names(limits: &SocketLimits, rooms: &[String]) -> Result<(), Over> {
    if rooms.len() > limits.rooms_per_join {
        return over(
            Limit::RoomsPerJoin,
            format!(
                "{} rooms in one request; at most {} (server.limits.rooms_per_join)",
                rooms.len(),
                limits.rooms_per_join
            ),
        );
    }
    if let Some(r) = rooms.iter().find(|r| r.len() > limits.room_name_bytes) {
        return over(
            Limit::RoomName,
            format!(
                "a room name of {} bytes; at most {} (server.limits.room_name_bytes)",
                r.len(),
                limits.room_name_bytes
            ),
        );
    }
    Ok(())
}

/// Checks that joining `new` more rooms keeps a socket within `rooms_per_socket`.
pub fn room_count(limits: &SocketLimits, now: usize, new: usize) -> Result<(), Over> {
    if now + new > limits.rooms_per_socket {
        return over(
            Limit::RoomsPerSocket,
            format!(
                "would be in {} rooms; at most {} (server.limits.rooms_per_socket)",
                now + new,
                limits.rooms_per_socket
            ),
        );
    }
    Ok(())
}

/// Checks a publish's size in bytes.
pub fn publish_size(limits: &SocketLimits, bytes: usize) -> Result<(), Over> {
    if bytes > limits.max_publish_bytes {
        return over(
            Limit::PublishSize,
            format!(
                "{bytes} bytes; at most {} (server.limits.max_publish_bytes)",
                limits.max_publish_bytes
            ),
        );
    }
    Ok(())
}

/// One socket's publish rate: a token bucket of `publishes_per_second` tokens,
/// refilled continuously. Owned by the socket's relay lane, so it needs no lock.
pub struct Meter {
    tokens: f64,
    last: Instant,
}

impl Meter {
    /// A full bucket.
    pub fn new(limits: &SocketLimits) -> Meter {
        Meter {
            tokens: f64::from(limits.publishes_per_second),
            last: Instant::now(),
        }
    }

    /// Takes one publish's token, or says the socket is over its rate.
    pub fn take(&mut self, limits: &SocketLimits, now: Instant) -> Result<(), Over> {
        let rate = f64::from(limits.publishes_per_second);
        if rate == 0.0 {
            return Ok(());
        }
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * rate).min(rate);
        if self.tokens < 1.0 {
            return over(
                Limit::PublishRate,
                format!(
                    "more than {} publishes per second (server.limits.publishes_per_second)",
                    limits.publishes_per_second
                ),
            );
        }
        self.tokens -= 1.0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let limits = SocketLimits {
            publishes_per_second: 10,
            ..SocketLimits::default()
        };
        let t0 = Instant::now();
        let mut m = Meter::new(&limits);
        for _ in 0..10 {
            m.take(&limits, t0).unwrap();
        }
        let e = m.take(&limits, t0).unwrap_err();
        assert_eq!(e.limit, Limit::PublishRate);
        // A tenth of a second later, one more.
        m.take(&limits, t0 + Duration::from_millis(100)).unwrap();
        assert!(m.take(&limits, t0 + Duration::from_millis(100)).is_err());
        let off = SocketLimits {
            publishes_per_second: 0,
            ..SocketLimits::default()
        };
        let mut m = Meter::new(&off);
        for _ in 0..1000 {
            m.take(&off, t0).unwrap();
        }
    }

    #[test]
    fn room_limits_name_the_key() {
        let l = SocketLimits::default();
        let many: Vec<String> = (0..101).map(|i| i.to_string()).collect();
        let e = names(&l, &many).unwrap_err();
        assert!(e.message.contains("rooms_per_join"), "{}", e.message);
        assert!(names(&l, &["x".repeat(257)]).is_err());
        assert!(room_count(&l, 999, 1).is_ok());
        assert_eq!(
            room_count(&l, 999, 2).unwrap_err().limit,
            Limit::RoomsPerSocket
        );
        assert!(publish_size(&l, 1_000_000).is_ok() && publish_size(&l, 1_000_001).is_err());
    }
}
