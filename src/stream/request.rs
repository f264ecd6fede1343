//! Parsing `GET /events`: channels, types and the resume point.

use crate::config::{is_valid_channel, is_valid_event_type};
use crate::reply::ApiError;

/// What `GET /events` asks for, parsed from the query and headers.
#[derive(Debug, PartialEq, Eq)]
pub struct StreamRequest {
    pub channels: Vec<Box<str>>,
    pub types: Option<Box<[Box<str>]>>,
    pub last_event_id: Option<String>,
}

impl StreamRequest {
    /// Parses `?channel=a&channel=b`, `?channels=a,b`, `?types=x,y` and the resume point
    /// (`Last-Event-ID` header, else `?lastEventId=`). Unknown query parameters are ignored, as
    /// browsers and cache busters add their own.
    pub fn parse(
        query: Option<&str>,
        last_event_id_header: Option<&[u8]>,
        max_channels: usize,
    ) -> Result<StreamRequest, ApiError> {
        let mut channels: Vec<Box<str>> = Vec::new();
        let mut types: Option<Vec<Box<str>>> = None;
        let mut query_id = None;
        for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            match &*key {
                "channel" => push_channel(&mut channels, &value, max_channels)?,
                "channels" => {
                    for name in value.split(',').filter(|s| !s.is_empty()) {
                        push_channel(&mut channels, name, max_channels)?;
                    }
                }
                "types" => {
                    let list = types.get_or_insert_with(Vec::new);
                    for name in value.split(',').filter(|s| !s.is_empty()) {
                        if !is_valid_event_type(name) {
                            return Err(ApiError::bad_request(
                                "invalid_types",
                                "types must be event names matching [A-Za-z0-9._:-]{1,64}",
                            ));
                        }
                        if list.len() >= 64 {
                            return Err(ApiError::bad_request("invalid_types", "at most 64 types"));
                        }
                        list.push(name.into());
                    }
                }
                "lastEventId" => query_id = Some(value.into_owned()),
                _ => {}
            }
        }
        if channels.is_empty() {
            return Err(ApiError::bad_request(
                "missing_channel",
                "name at least one channel: ?channel=name or ?channels=a,b",
            ));
        }
        if types.as_ref().is_some_and(|t| t.is_empty()) {
            return Err(ApiError::bad_request("invalid_types", "types is empty"));
        }
        // A header that is not UTF-8 cannot be one of our ids: treat it as malformed (reset).
        // An empty id means "no resume point" (EventSource never sends one).
        let last_event_id = match last_event_id_header {
            Some(raw) => Some(String::from_utf8_lossy(raw).into_owned()),
            None => query_id,
        }
        .filter(|id| !id.is_empty());
        Ok(StreamRequest {
            channels,
            types: types.map(Vec::into_boxed_slice),
            last_event_id,
        })
    }
}

fn push_channel(channels: &mut Vec<Box<str>>, name: &str, max: usize) -> Result<(), ApiError> {
    if !is_valid_channel(name) {
        return Err(ApiError::bad_request(
            "invalid_channel",
            "channel names match [A-Za-z0-9._:/-]{1,128}",
        ));
    }
    if channels.iter().any(|c| &**c == name) {
        return Ok(());
    }
    if channels.len() >= max {
        return Err(ApiError::bad_request(
            "too_many_channels",
            format!("at most {max} channels per connection"),
        ));
    }
    channels.push(name.into());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_channel_forms_and_types() {
        let r = StreamRequest::parse(Some("channel=a&channels=b,c&channel=a&types=x,y"), None, 32)
            .unwrap();
        assert_eq!(
            r.channels,
            vec!["a".into(), "b".into(), "c".into()] as Vec<Box<str>>
        );
        assert_eq!(r.types.unwrap().len(), 2);
    }

    #[test]
    fn header_id_wins_over_query_and_empty_means_none() {
        let r = StreamRequest::parse(Some("channel=a&lastEventId=1-1"), Some(b"2-2"), 32).unwrap();
        assert_eq!(r.last_event_id.as_deref(), Some("2-2"));
        let r = StreamRequest::parse(Some("channel=a&lastEventId=1-1"), None, 32).unwrap();
        assert_eq!(r.last_event_id.as_deref(), Some("1-1"));
        let r = StreamRequest::parse(Some("channel=a&lastEventId="), None, 32).unwrap();
        assert_eq!(r.last_event_id, None);
    }

    #[test]
    fn rejects_bad_requests() {
        let code = |q: &str| StreamRequest::parse(Some(q), None, 2).unwrap_err().code;
        assert_eq!(code(""), "missing_channel");
        assert_eq!(code("channel="), "invalid_channel");
        assert_eq!(code("channel=a%20b"), "invalid_channel");
        assert_eq!(code("channel=a&channel=b&channel=c"), "too_many_channels");
        assert_eq!(
            code(&format!("channel={}", "x".repeat(129))),
            "invalid_channel"
        );
        assert_eq!(code("channel=a&types=bad%0Aname"), "invalid_types");
        assert_eq!(code("channel=a&types=,"), "invalid_types");
    }
}
