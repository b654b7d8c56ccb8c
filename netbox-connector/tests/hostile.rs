//! `read` against servers that answer what NetBox would not: every read
//! ends, with an error or an end, and none loops or panics.

use exposure_connector_sdk::prelude::*;
use exposure_connector_sdk::testing::FakeHttp;
use netbox_connector::connector::read;

fn settings() -> Vec<(String, String)> {
    vec![("url".into(), "netbox.example.com".into())]
}

fn request(cursor: Option<String>, partition: Partition) -> ReadRequest {
    ReadRequest {
        stream_name: "devices".into(),
        partition,
        cursor,
        watermark: None,
        deletions_since: None,
        page_size: 100,
    }
}

const WHOLE: Partition = Partition { index: 0, count: 1 };

/// Reads pages until the partition ends or fails; at most `bound` pages.
fn read_all(
    http: &mut FakeHttp,
    partition: Partition,
    bound: usize,
) -> Result<usize, ConnectorError> {
    let mut cursor = None;
    for pages in 1..=bound {
        let page = read(&settings(), &request(cursor, partition), http)?;
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(pages),
        }
    }
    panic!("the read did not end within {bound} pages");
}

#[test]
fn a_count_that_never_arrives_ends_the_read() {
    // Says 500 devices match, returns none.
    let mut http = FakeHttp::new(|_| Ok(FakeHttp::json(200, r#"{"count": 500, "results": []}"#)));
    assert_eq!(read_all(&mut http, WHOLE, 10), Ok(1));
}

#[test]
fn the_same_device_twice_is_refused_not_read_forever() {
    let mut http = FakeHttp::new(|_| {
        Ok(FakeHttp::json(
            200,
            r#"{"count": 2, "results": [{"id": 18446744073709551615}]}"#,
        ))
    });
    let e = read_all(&mut http, WHOLE, 10).unwrap_err();
    assert!(
        matches!(&e, ConnectorError::BadResponse(m) if m.contains("id order")),
        "{e:?}"
    );
}

#[test]
fn ids_at_the_top_of_the_id_space_end_a_partitioned_read() {
    // Every request, block pages and the probe for the next block alike,
    // answers the largest possible id.
    let mut http = FakeHttp::new(|request: &Request| {
        let body = if request.path_and_query.contains("id__lt=") {
            r#"{"count": 0, "results": []}"#
        } else {
            r#"{"count": 1, "results": [{"id": 18446744073709551615}]}"#
        };
        Ok(FakeHttp::json(200, body))
    });
    for index in 0..3 {
        let pages = read_all(&mut http, Partition { index, count: 3 }, 10).unwrap();
        assert!(pages <= 2, "partition {index}: {pages} pages");
    }
}

#[test]
fn devices_out_of_order_or_outside_the_block_are_refused() {
    for body in [
        r#"{"count": 2, "results": [{"id": 5}, {"id": 3}]}"#,
        r#"{"count": 1, "results": [{"id": 25000}]}"#,
    ] {
        let text = body.to_string();
        let mut http = FakeHttp::new(move |_| Ok(FakeHttp::json(200, &text)));
        let e = read(
            &settings(),
            &request(None, Partition { index: 0, count: 2 }),
            &mut http,
        )
        .unwrap_err();
        assert!(
            matches!(&e, ConnectorError::BadResponse(_)),
            "{body}: {e:?}"
        );
    }
}
