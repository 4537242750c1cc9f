//! The embedded mock Douyin server, standalone: for clients in other languages, or to try the
//! crate's examples by hand. It prints its base URL and the credentials it accepts, then
//! serves every token family (OpenAPI client and user tokens, mini-app and mini-game app
//! tokens, business tokens, `code2session`) until interrupted (Ctrl-C).
//!
//! ```text
//! cargo run --example mock_server
//! ```
//!
//! See the `douyin_auth::mock` module docs for the routes, the answer shapes and where each
//! API family reads the token; `docs/douyin-protocol.md` for the protocol they follow.

use douyin_auth::mock::MockDouyin;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let mock = MockDouyin::start().await?;
    let base = mock.base_url();
    // A user who has authorised the app, and a login code, so every family can be tried.
    let user = mock.issue_user_tokens("mock-user-1", ["user_info", "data.external.item"]);
    let login = mock.login_code("mock-user-1");
    println!("mock Douyin serving on {base}");
    println!("client_key / appid:        {}", mock.client_key());
    println!("client_secret / secret:    {}", mock.client_secret());
    println!("user open_id:              {}", user.open_id);
    println!("user access token:         {}", user.access_token);
    println!("user refresh token:        {}", user.refresh_token);
    println!("login code (code2session): {login}");
    println!();
    println!("try:");
    println!(
        "  curl -s -X POST {base}/oauth/stable_client_token/ -H 'content-type: application/json' \
         -d '{{\"client_key\":\"{key}\",\"client_secret\":\"{secret}\",\"grant_type\":\"client_credential\"}}'",
        key = mock.client_key(),
        secret = mock.client_secret()
    );
    println!(
        "  curl -s {base}/oauth/userinfo/ -H 'access-token: {}'",
        user.access_token
    );
    println!("serving until interrupted (Ctrl-C)");
    tokio::signal::ctrl_c().await?;
    println!("stopping; counters: {:?}", mock.counters());
    mock.shutdown().await;
    Ok(())
}
