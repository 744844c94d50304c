//! The HTTP mock (`testkit::http_mock`): canned answers per method and path,
//! sequences for retries, 404 for the rest, and a record of every request a
//! test can wait on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use sockstep::ErrorKind;
use sockstep::http::client::{self, Client};
use sockstep::http::{Headers, Response};
use sockstep::testkit::http_mock::HttpMock;
use sockstep::testkit::servers::Options;

const WAIT: Duration = Duration::from_secs(5);

#[test]
fn a_canned_answer_is_served_and_the_request_recorded_whole() {
    let mock = HttpMock::start().expect("mock");
    mock.respond(
        "POST",
        "/items",
        Response::text(201, "created").with_header("Location", "/items/7"),
    );
    let mut headers = Headers::new();
    headers.append("Content-Type", "application/json");
    headers.append("X-Request-Id", "abc");
    let response = Client::new()
        .request(
            "POST",
            &mock.url("/items?draft=no"),
            &headers,
            b"{\"n\":1}".to_vec(),
        )
        .expect("request");
    assert_eq!(response.status, 201);
    assert_eq!(response.body, b"created");
    assert_eq!(response.headers.get("location"), Some("/items/7"));

    let requests = mock.wait_for_requests(1, WAIT).expect("one request");
    let request = &requests[0];
    assert_eq!(
        (request.method.as_str(), request.target.as_str()),
        ("POST", "/items?draft=no")
    );
    assert_eq!(request.headers.get("x-request-id"), Some("abc"));
    assert_eq!(request.body, b"{\"n\":1}");
}

#[test]
fn anything_not_set_is_404_and_still_recorded() {
    let mock = HttpMock::start().expect("mock");
    let response = client::get(&mock.url("/nowhere")).expect("get");
    assert_eq!(response.status, 404);
    let body = String::from_utf8_lossy(&response.body).into_owned();
    assert!(body.contains("no answer set for GET /nowhere"), "{body}");
    assert_eq!(mock.requests_to("GET", "/nowhere").len(), 1);
}

#[test]
fn a_sequence_answers_in_turn_and_its_last_answer_repeats() {
    let mock = HttpMock::start().expect("mock");
    mock.respond_in_turn(
        "GET",
        "/flaky",
        [
            Response::new(503),
            Response::new(503),
            Response::text(200, "ok"),
        ],
    );
    let mut client = Client::new();
    let statuses: Vec<u16> = (0..5)
        .map(|_| client.get(&mock.url("/flaky")).expect("get").status)
        .collect();
    assert_eq!(statuses, [503, 503, 200, 200, 200]);
    assert_eq!(mock.requests_to("GET", "/flaky").len(), 5);
}

#[test]
fn setting_an_answer_again_replaces_it_and_an_empty_sequence_removes_it() {
    let mock = HttpMock::start().expect("mock");
    mock.respond("GET", "/v", Response::text(200, "one"));
    assert_eq!(client::get(&mock.url("/v")).expect("get").body, b"one");
    mock.respond("GET", "/v", Response::text(200, "two"));
    assert_eq!(client::get(&mock.url("/v")).expect("get").body, b"two");
    mock.respond_in_turn("GET", "/v", []);
    assert_eq!(client::get(&mock.url("/v")).expect("get").status, 404);
}

#[test]
fn head_gets_the_head_of_the_get_answer() {
    let mock = HttpMock::start().expect("mock");
    mock.respond("GET", "/doc", Response::text(200, "twelve bytes"));
    let response = Client::new()
        .request("HEAD", &mock.url("/doc"), &Headers::new(), Vec::new())
        .expect("head");
    assert_eq!(response.status, 200);
    assert_eq!(response.headers.get("content-length"), Some("12"));
    assert!(response.body.is_empty());
}

#[test]
fn methods_and_paths_are_matched_exactly() {
    let mock = HttpMock::start().expect("mock");
    mock.respond("PUT", "/a", Response::new(204))
        .respond("DELETE", "/a", Response::new(202));
    let mut client = Client::new();
    let mut status = |method: &str, path: &str| {
        client
            .request(method, &mock.url(path), &Headers::new(), Vec::new())
            .expect("request")
            .status
    };
    assert_eq!(status("PUT", "/a"), 204);
    assert_eq!(status("DELETE", "/a"), 202);
    assert_eq!(status("GET", "/a"), 404);
    assert_eq!(status("PUT", "/a/"), 404);
    assert_eq!(mock.requests().len(), 4);
}

#[test]
fn a_chunked_body_is_recorded_decoded() {
    let mock = HttpMock::start().expect("mock");
    let mut stream = TcpStream::connect(mock.addr()).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream
        .write_all(
            b"POST /up HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n\
              3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .expect("write");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("answer");
    assert!(
        answer.starts_with(b"HTTP/1.1 404"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    let requests = mock.wait_for_requests(1, WAIT).expect("recorded");
    assert_eq!(requests[0].body, b"abcde");
}

#[test]
fn a_wait_that_times_out_lists_the_requests_seen() {
    let mock = HttpMock::start().expect("mock");
    client::get(&mock.url("/only")).expect("get");
    let e = mock
        .wait_for_requests(2, Duration::from_millis(100))
        .expect_err("only one came");
    assert_eq!(e.kind(), &ErrorKind::TimedOut);
    let text = e.to_string();
    assert!(
        text.contains("1 seen") && text.contains("GET /only"),
        "{text}"
    );
}

#[test]
fn recording_is_bounded_and_answering_goes_on() {
    let options = Options {
        max_recorded: 2,
        ..Options::default()
    };
    let mock = options.http_mock().expect("mock");
    mock.respond("GET", "/", Response::new(204));
    let mut client = Client::new();
    for _ in 0..4 {
        assert_eq!(client.get(&mock.url("/")).expect("get").status, 204);
    }
    assert_eq!(mock.requests_not_kept(), 2);
    assert_eq!(mock.stats().requests, 4);
    assert_eq!(mock.shutdown().len(), 2);
}

#[test]
fn a_method_without_a_route_is_405_and_not_recorded() {
    let mock = HttpMock::start().expect("mock");
    let response = Client::new()
        .request("PROPFIND", &mock.url("/x"), &Headers::new(), Vec::new())
        .expect("request");
    assert_eq!(response.status, 405);
    assert!(mock.requests().is_empty());
}
