//! `shopctl store ...`: every RPC of `ecommerce.Storefront`, the shop as a
//! customer uses it: an account, a cart, a checkout.
//!
//! Passwords never need to appear on the command line: they come from
//! `--password-file`, `--password-stdin` or `SHOP_PASSWORD`. The cart and
//! checkout act for whoever the token belongs to, so log in first:
//!
//! ```text
//! shopctl store register --email ana@example.com --name Ana --password-file pw.txt
//! export SHOP_TOKEN=$(shopctl store login --email ana@example.com --password-file pw.txt -o token)
//! shopctl store add-to-cart PRODUCT_ID --quantity 2
//! shopctl store set-item PRODUCT_ID --quantity 1        # 0 removes it
//! shopctl store cart
//! shopctl store checkout --destination Lisbon --idempotency-key run-1
//! ```

use std::{io::BufRead as _, path::PathBuf};

use anyhow::{Context as _, bail};
use shop_proto::ecommerce::{
    CartItemRequest, CheckoutRequest, GetCartRequest, LoginRequest, RegisterRequest,
};

use super::{
    ConnectArgs,
    output::{OutputArgs, Printer},
    view::{print_cart, print_order, print_session},
};

/// The storefront as a customer uses it: account, cart, checkout
/// (ecommerce.Storefront). Cart and checkout need the token `store login`
/// prints, as --token or SHOP_TOKEN.
#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(subcommand)]
    pub command: StoreCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Create a customer account and print its session (register).
    Register {
        /// The account's email address.
        #[arg(long)]
        email: String,
        /// The customer's name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Log in and print the session; `-o token` prints just the token, for
    /// `export SHOP_TOKEN=$(...)` (login).
    Login {
        /// The account's email address.
        #[arg(long)]
        email: String,
        #[command(flatten)]
        password: PasswordArgs,
    },
    /// Show the cart, priced with the catalog's current prices (getCart).
    Cart,
    /// Add units of a product to the cart, up to 99 (addToCart).
    AddToCart {
        /// The product's id.
        product_id: String,
        /// Units to add.
        #[arg(long, default_value_t = 1)]
        quantity: i64,
    },
    /// Set the quantity of a product in the cart; 0 removes it (setCartItem).
    SetItem {
        /// The product's id.
        product_id: String,
        /// The new quantity.
        #[arg(long)]
        quantity: i64,
    },
    /// Place the cart as an order and print it; the cart is emptied
    /// (checkout).
    Checkout {
        /// Where to ship it.
        #[arg(long)]
        destination: String,
        /// Makes a retry safe: one order per key.
        #[arg(long, default_value = "")]
        idempotency_key: String,
    },
}

/// Where the password comes from.
#[derive(clap::Args, Debug)]
pub struct PasswordArgs {
    /// Read the password from the first line of this file.
    #[arg(long, conflicts_with = "password_stdin")]
    pub password_file: Option<PathBuf>,
    /// Read the password from the first line of stdin.
    #[arg(long)]
    pub password_stdin: bool,
    /// The password. Prefer the environment variable, --password-file or
    /// --password-stdin: other users can see arguments in `ps`.
    #[arg(long, env = "SHOP_PASSWORD", hide_env_values = true)]
    pub password: Option<String>,
}

impl PasswordArgs {
    /// The password from the file, stdin, or the flag/environment, in that order.
    fn read(self) -> anyhow::Result<String> {
        let password = if let Some(path) = self.password_file {
            first_line(
                &std::fs::read_to_string(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?,
            )
        } else if self.password_stdin {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("cannot read the password from stdin")?;
            first_line(&line)
        } else if let Some(password) = self.password {
            password
        } else {
            bail!("no password: give --password-file, --password-stdin or SHOP_PASSWORD");
        };
        Ok(password)
    }
}

/// The text up to the first line break, spaces kept.
fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

/// Runs one `store` subcommand.
pub async fn run(args: StoreArgs) -> anyhow::Result<()> {
    let clients = args.connect.clients()?;
    let mut client = clients.storefront.clone();
    let p = Printer::new(args.output.output);
    match args.command {
        StoreCommand::Register {
            email,
            name,
            password,
        } => {
            let request = RegisterRequest {
                email,
                password: password.read()?,
                name,
            };
            let session = client
                .register(clients.request(request))
                .await?
                .into_inner();
            print_session(&p, &session)
        }
        StoreCommand::Login { email, password } => {
            let request = LoginRequest {
                email,
                password: password.read()?,
            };
            let session = client.login(clients.request(request)).await?.into_inner();
            print_session(&p, &session)
        }
        StoreCommand::Cart => {
            let cart = client
                .get_cart(clients.request(GetCartRequest {}))
                .await?
                .into_inner();
            print_cart(&p, &cart)
        }
        StoreCommand::AddToCart {
            product_id,
            quantity,
        } => {
            let cart = client
                .add_to_cart(clients.request(CartItemRequest {
                    product_id,
                    quantity,
                }))
                .await?
                .into_inner();
            print_cart(&p, &cart)
        }
        StoreCommand::SetItem {
            product_id,
            quantity,
        } => {
            let cart = client
                .set_cart_item(clients.request(CartItemRequest {
                    product_id,
                    quantity,
                }))
                .await?
                .into_inner();
            print_cart(&p, &cart)
        }
        StoreCommand::Checkout {
            destination,
            idempotency_key,
        } => {
            let order = client
                .checkout(clients.request(CheckoutRequest {
                    destination,
                    idempotency_key,
                }))
                .await?
                .into_inner();
            print_order(&p, &order)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_end_at_the_line_break_and_keep_their_spaces() {
        assert_eq!(first_line("a long password \n"), "a long password ");
        assert_eq!(first_line("pw\r\nsecond"), "pw");
        assert_eq!(first_line(""), "");
    }
}
